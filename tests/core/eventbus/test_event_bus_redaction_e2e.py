"""C6 through a real core: each subscriber of one event gets the fields its
traits allow (PHI needs handles_phi, PII handles_pii); the copy is redacted
per subscriber when it is sent, so a cleared copy never reaches a trusted
subscriber and a full copy never reaches an untrusted one, whatever the
order of deliveries; each redacted delivery is audited once."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from support.clients import audit_rows
from support.events import MESSAGE_SEND_REQUESTED, Inbox
from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, core_running
from support.waiting import until
from vivified.events.v1.canonical_pb2 import MessageSendRequested
from vivified.sdk import PluginRuntime

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

TRAITS = {
    "phi": ["storage_plugin", "handles_phi", "audit_required", "encryption_required"],
    "pii": ["storage_plugin", "handles_pii", "audit_required"],
    "both": ["storage_plugin", "handles_phi", "handles_pii", "audit_required", "encryption_required"],
    "none": ["storage_plugin"],
}


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("c6") / "data"
    with core_running(data_dir, "--heartbeat-interval", "1", "--leaf-ttl", "600") as core:
        yield core


async def _plugin(core: CoreProcess, tmp: pathlib.Path, plugin_id: str, traits: str, **fields: object) -> PluginRuntime:
    classes = [
        c
        for t, c in (("handles_phi", "CLASSIFICATION_PHI"), ("handles_pii", "CLASSIFICATION_PII"))
        if t in TRAITS[traits]
    ]
    if classes:
        fields["compliance"] = {"data_classifications": classes, "retention_days": 30}
    if "handles_phi" in TRAITS[traits]:
        fields["compliance"] = {
            "data_classifications": classes,
            "retention_days": 2555,
            "hipaa_controls": ["164.312(a)", "164.312(b)", "164.312(e)"],
        }
    manifest = write_manifest(tmp, plugin_id, traits=TRAITS[traits], **fields)
    return await started_plugin(core, manifest, [RecordingStore()])


async def test_c6_each_subscriber_gets_only_the_classified_fields_its_traits_allow(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await _plugin(bus, tmp_path, "c6-pub", "none", publishes=[MESSAGE_SEND_REQUESTED])
    # Interleaved trust: a cleared copy prepared for one must not be what the next gets.
    names = ["c6-both-1", "c6-none-1", "c6-phi", "c6-both-2", "c6-pii", "c6-none-2"]
    subscribers = {
        name: await _plugin(bus, tmp_path, name, name.split("-")[1], subscribes=[MESSAGE_SEND_REQUESTED])
        for name in names
    }
    inboxes = {name: Inbox() for name in names}
    try:
        for name, runtime in subscribers.items():
            await runtime.subscribe("msgs", {MessageSendRequested: inboxes[name]}).opened()
        sent = MessageSendRequested(
            message_id="m-1", recipient="pat@example.com", subject="results", body="PHI-CANARY diagnosis"
        )
        for n in range(3):
            await publisher.publish(sent, event_id=f"c6-{n}")
        await until(lambda: all(len(i.received) == 3 for i in inboxes.values()), 15, "every delivery")

        expected = {
            "both": ("pat@example.com", "PHI-CANARY diagnosis", set()),
            "phi": ("", "PHI-CANARY diagnosis", {"recipient"}),
            "pii": ("pat@example.com", "", {"body"}),
            "none": ("", "", {"body", "recipient"}),
        }
        for name, inbox in inboxes.items():
            recipient, body, cleared = expected[name.split("-")[1]]
            for payload, received in inbox.received:
                assert (payload.recipient, payload.body, set(received.redacted_fields)) == (recipient, body, cleared)
                assert (payload.message_id, payload.subject) == ("m-1", "results")  # unclassified fields stay
            redactions = audit_rows(bus, action="event.redact", actor=f"plugin:{name}")
            assert len(redactions) == (3 if cleared else 0)
            for row in redactions:
                assert set(json.loads(row.detail)["fields"].split(",")) == cleared
                assert "PHI-CANARY" not in row.detail and "pat@example.com" not in row.detail
            assert len(audit_rows(bus, action="event.deliver", actor=f"plugin:{name}")) == (0 if cleared else 3)
    finally:
        for runtime in (publisher, *subscribers.values()):
            await runtime.stop()
