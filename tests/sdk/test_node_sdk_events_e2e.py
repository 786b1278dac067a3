"""The Node.js SDK's event lane against a real `vivified core` over mTLS: a
Node plugin (tests/sdk/node_events_plugin.mjs, on the built sdk/nodejs/dist)
publishes with `publish` and `publishStream`, is refused an event type its
manifest does not declare (as a typed error with the core's reason), and
serves a subscription whose handler nacks a first delivery and acks the
redelivery. A Python SDK plugin is the other side of each exchange.

One scenario runs per module (one core, one Node process); the tests read
what it left behind: the Node program's JSON lines, the Python inbox, and
the core's audit log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from conformance.conftest import start_plugin
from conformance.plugins import ROOT, PluginUnderTest
from support.clients import audit_rows
from support.events import EMAIL_SENT, EVENT_BUS, SECURITY_ALERT, USER_CREATED, Inbox, event_plugin
from support.lane import write_manifest
from support.processes import CoreProcess, core_running, stop_process
from support.waiting import until
from vivified.events.v1.canonical_pb2 import EmailSent, UserCreated

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NODE_PLUGIN = "node-events"
PY_PLUGIN = "py-events"
PROGRAM = ROOT / "tests" / "sdk" / "node_events_plugin.mjs"
STREAMED = ["node-stream-1", "node-stream-2", "node-stream-3"]
PERMISSION_DENIED = 7

if shutil.which("node") is None or not (ROOT / "sdk/nodejs/dist/src/index.js").is_file():
    pytest.skip("needs node and the built Node SDK (tools/setup.sh)", allow_module_level=True)


@dataclass
class Scenario:
    core: CoreProcess
    records: list[dict[str, Any]]
    inbox: Inbox
    node_log: str

    def steps(self, step: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["step"] == step]


@pytest.fixture(scope="module")
def events_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("node-events") / "data"
    # A one-second ack timeout: a delivery left unacknowledged would come back within the scenario.
    flags = ("--heartbeat-interval", "1", "--leaf-ttl", "600", "--event-ack-timeout", "1")
    with core_running(data_dir, *flags) as core:
        yield core


def _records(path: pathlib.Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scenario(events_core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    core, directory = events_core, tmp_path_factory.mktemp("node-events-run")
    out, go = directory / "events.jsonl", directory / "go"
    python = await event_plugin(core, directory, PY_PLUGIN, publishes=[USER_CREATED], subscribes=[EMAIL_SENT])
    inbox = Inbox()
    await python.subscribe("node-mail", {EmailSent: inbox}).opened()
    manifest = write_manifest(directory, NODE_PLUGIN, publishes=[EMAIL_SENT], subscribes=[USER_CREATED])
    spec = PluginUnderTest(
        "node-events", ("node", str(PROGRAM)), manifest, env=(("EVENTS_OUT", str(out)), ("EVENTS_GO", str(go)))
    )
    running = await start_plugin(core, spec, directory, control=False)
    try:
        go.touch()
        log = lambda: f"{running.log()}\n{out.read_text() if out.exists() else ''}"  # noqa: E731
        await until(lambda: any(r["step"] in ("opened", "failed") for r in _records(out)), 15, f"opened:\n{log()}")
        await python.publish(UserCreated(user_id="u-nack", username="nack-then-ack"), event_id="py-user-1")
        # Not fatal here: each test below judges (and names) what did not arrive.
        with contextlib.suppress(AssertionError):
            await until(lambda: len([r for r in _records(out) if r["step"] == "delivery"]) >= 2, 15)
        with contextlib.suppress(AssertionError):
            await until(lambda: len(inbox.received) >= 1 + len(STREAMED), 10)
        # Past the ack timeout: an unacknowledged delivery on either side would be back by now.
        await asyncio.sleep(1.5)
        yield Scenario(core, _records(out), inbox, running.log())
    finally:
        stop_process(running.process)  # type: ignore[arg-type]
        await python.stop()


async def test_node_publish_and_publish_stream_reach_a_python_subscriber_exactly_once(scenario: Scenario) -> None:
    assert not scenario.steps("failed"), scenario.records
    (unary,) = scenario.steps("publish")
    assert unary["event_id"] == "node-unary-1" and unary["position"] and not unary["duplicate"]
    (stream,) = scenario.steps("stream")
    assert [a["event_id"] for a in stream["acks"]] == STREAMED
    assert all(a["position"] and not a["duplicate"] for a in stream["acks"])
    assert sorted(scenario.inbox.event_ids()) == sorted(["node-unary-1", *STREAMED])
    for payload, received in scenario.inbox.received:
        assert received.event.source_plugin_id == NODE_PLUGIN and received.attempt == 1
        assert isinstance(payload, EmailSent)
        suffix = "unary" if received.event.event_id == "node-unary-1" else received.event.event_id[-1]
        assert (payload.email_id, payload.provider_message_id) == (
            f"node-{'unary' if suffix == 'unary' else 'stream-' + suffix}",
            f"pm-{suffix}",
        )
        assert payload.user_id == f"u-{suffix}"


async def test_node_publish_of_an_undeclared_type_is_refused_with_a_typed_error_and_reason(
    scenario: Scenario,
) -> None:
    by_lane = {r["via"]: r for r in scenario.steps("refused")}
    assert set(by_lane) == {"publish", "stream"}, scenario.records
    for refused in by_lane.values():
        assert refused["name"] == "PermissionDeniedError" and refused["permissionDenied"], refused
        assert refused["code"] == PERMISSION_DENIED
        assert (refused["reason"], refused["domain"]) == ("EVENT_NOT_DECLARED", "vivified.events"), refused
    assert by_lane["publish"]["ruleId"] == f"manifest:{NODE_PLUGIN}:publishes"
    assert by_lane["stream"]["closeRaisedIt"], "PublishStream.close() raises the first refusal"
    assert SECURITY_ALERT not in {r.event.event_type for _, r in scenario.inbox.received}


async def test_node_subscription_nacks_the_first_delivery_and_acks_the_redelivery(scenario: Scenario) -> None:
    deliveries = scenario.steps("delivery")
    # Exactly two: attempt 1 (thrown: a nack) and attempt 2 (returned: an ack, so no attempt 3).
    assert [(d["event_id"], d["attempt"], d["user_id"]) for d in deliveries] == [
        ("py-user-1", 1, "u-nack"),
        ("py-user-1", 2, "u-nack"),
    ], scenario.node_log


async def test_node_publishes_are_audited_once_each_allowed_or_denied(scenario: Scenario) -> None:
    core, actor = scenario.core, f"plugin:{NODE_PLUGIN}"
    unary = audit_rows(core, actor=actor, action=f"{EVENT_BUS}/Publish")
    assert [(json.loads(r.detail).get("event_id"), r.decision, r.outcome) for r in unary if r.decision == "allow"] == [
        ("node-unary-1", "allow", "OK")
    ]
    (denied,) = [r for r in unary if r.decision == "deny"]
    assert (denied.reason, denied.rule_id, denied.outcome) == (
        "EVENT_NOT_DECLARED",
        f"manifest:{NODE_PLUGIN}:publishes",
        "PERMISSION_DENIED",
    )
    streamed = audit_rows(core, actor=actor, action="event.publish")
    by_id = {json.loads(r.detail)["event_id"]: r for r in streamed}
    assert len(streamed) == len(by_id) == len(STREAMED) + 1, [(r.detail, r.decision) for r in streamed]
    for event_id in STREAMED:
        row = by_id[event_id]
        assert (row.decision, row.outcome, row.resource) == ("allow", "OK", f"event/{EMAIL_SENT}")
    refused = by_id["node-undeclared-stream"]
    assert (refused.decision, refused.reason, refused.resource) == (
        "deny",
        "EVENT_NOT_DECLARED",
        f"event/{SECURITY_ALERT}",
    )
