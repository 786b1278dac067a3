"""A6, CA rotation under load, against a real core process: leaf TTL 10 s (the
core's minimum), the next CA created by `vivified ca rotate --ca-ttl 60`, two
SDK plugins (a publisher streaming events and a subscriber) running across
the whole rotation. Zero failed RPCs, zero lost events, at least three
renewals each; every step audited once; a leaf of the old chain is accepted
during the overlap and refused once the old root is removed.

Wall time is short because the overlap windows are one leaf lifetime each
(the least the core allows), not because any assertion is relaxed."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import subprocess
from collections.abc import Awaitable

import grpc
import pytest
from cryptography import x509

from support.clients import audit_rows, operator_channel, target_override
from support.events import USER_CREATED, Inbox, event_plugin
from support.processes import CoreProcess, core_running, run_cli
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.events.v1.canonical_pb2 import UserCreated

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]

REGISTRY = "/vivified.registry.v1.PluginRegistryService"


async def cli(core: CoreProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread: the plugins under test run on this event loop and must keep heartbeating."""
    return await asyncio.to_thread(run_cli, core, *args)


async def ca_status(core: CoreProcess) -> dict[str, object]:
    done = await cli(core, "ca", "status", "--json")
    assert done.returncode == 0, done.stderr
    status: dict[str, object] = json.loads(done.stdout)
    return status


def steps(core: CoreProcess, action: str) -> list[object]:
    return audit_rows(core, action=action, actor="core:core")


async def list_plugins(core: CoreProcess, operator_dir: pathlib.Path) -> admin_pb.ListPluginsResponse:
    """ListPlugins with the operator identity stored in `operator_dir`, trusting the core's current bundle."""
    creds = grpc.ssl_channel_credentials(
        core.ca_pem, (operator_dir / "operator.key").read_bytes(), (operator_dir / "operator.crt").read_bytes()
    )
    async with grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core)) as channel:
        return await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)


async def _both(holders: Awaitable[list[str]]) -> bool:
    return {"a6-pub", "a6-sub"} <= set(await holders)


def issued_by(cert_pem: bytes, issuing: x509.Certificate) -> bool:
    leaf = x509.load_pem_x509_certificate(cert_pem)
    try:
        leaf.verify_directly_issued_by(issuing)
    except Exception:  # noqa: BLE001 - any failure means "not this issuer"
        return False
    return True


async def test_a6_rotation_under_load_loses_nothing_and_retires_the_old_root(tmp_path: pathlib.Path) -> None:
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--leaf-ttl", "10") as core:
        ca_dir = core.data_dir / "ca"
        old_issuing = x509.load_pem_x509_certificate((ca_dir / "issuing.crt").read_bytes())
        # A long-lived leaf of the old chain (the operator certificate, 7 days).
        old_operator = tmp_path / "old-operator"
        shutil.copytree(core.operator_dir, old_operator)

        publisher = await event_plugin(core, tmp_path, "a6-pub", publishes=[USER_CREATED])
        subscriber = await event_plugin(core, tmp_path, "a6-sub", subscribes=[USER_CREATED])
        inbox = Inbox()
        await subscriber.subscribe("users", {UserCreated: inbox}).opened()
        acked: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def stream() -> None:
            n = 0
            while not stop.is_set():
                event_id = f"a6-{n}"
                try:
                    await publisher.publish(
                        UserCreated(user_id=f"u-{n}", username=f"user{n}"), event_id=event_id, timeout=5
                    )
                    acked.append(event_id)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    failures.append(f"{event_id}: {exc!r}")
                n += 1
                await asyncio.sleep(0.1)

        streaming = asyncio.create_task(stream())
        try:
            await until(lambda: len(acked) >= 5, 10, "events flowing")
            rotated = await cli(core, "ca", "rotate", "--overlap", "10", "--ca-ttl", "60", "--json")
            assert rotated.returncode == 0, rotated.stderr
            await until(lambda: steps(core, "ca.rotation.begin"), 5, "the core to take up the rotation")
            status = await ca_status(core)
            assert [r["role"] for r in status["roots"]] == ["current", "next"]  # type: ignore[index]
            assert status["rotation"]["phase"] == "distributing"  # type: ignore[index]

            async def holders_now() -> list[str]:
                found = (await ca_status(core)).get("old_chain_holders") or {}
                return list(found.get("plugins", []))  # type: ignore[attr-defined]

            # Before the switch every plugin holds an old-chain leaf (holders.json is rewritten each second).
            await until(lambda: _both(holders_now()), 5, "both plugins listed as old-chain holders")
            # Distribution: the operator's bundle (and each renewal's) holds both roots.
            assert len(x509.load_pem_x509_certificates(core.ca_pem)) == 2

            await until(lambda: steps(core, "ca.issuing.switch"), 25, f"the issuing switch:\n{core.log()[-3000:]}")
            new_issuing = x509.load_pem_x509_certificate((ca_dir / "issuing.crt").read_bytes())
            assert new_issuing.serial_number != old_issuing.serial_number
            # Overlap: a leaf of the old chain is still accepted.
            assert (await list_plugins(core, old_operator)).plugins
            await until(lambda: issued_by(publisher.certificate_pem, new_issuing), 15, "the publisher on the new chain")
            await until(
                lambda: issued_by(subscriber.certificate_pem, new_issuing), 15, "the subscriber on the new chain"
            )

            await until(lambda: steps(core, "ca.root.remove"), 25, f"the old root's removal:\n{core.log()[-3000:]}")
            # After removal the old chain is refused at the handshake (no RPC, so no ErrorInfo or audit record).
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_plugins(core, old_operator)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            status = await ca_status(core)
            assert [r["role"] for r in status["roots"]] == ["current"] and status["rotation"] is None  # type: ignore[index]
            assert len(x509.load_pem_x509_certificates(core.ca_pem)) == 1
            # The core re-issued its local operator identity on the new chain: it still works.
            assert (await list_plugins(core, core.operator_dir)).plugins
            await until(lambda: publisher.renewals >= 3 and subscriber.renewals >= 3, 15, "three renewals each")
            settled = len(acked)
            await until(lambda: len(acked) >= settled + 10, 10, "events flowing after the removal")
        finally:
            stop.set()
            await streaming

        try:
            await until(
                lambda: set(acked) <= set(inbox.event_ids()),
                15,
                f"every acknowledged event delivered; missing {sorted(set(acked) - set(inbox.event_ids()))[:20]} of "
                f"{len(acked)}, received {len(inbox.event_ids())}, failures {failures[:3]}",
            )
            assert failures == [], failures[:5]
            assert len(acked) > 100
            assert publisher.failure is None and subscriber.failure is None
            assert publisher.renewals >= 3 and subscriber.renewals >= 3
            for action in ("ca.rotation.begin", "ca.issuing.switch", "ca.root.remove"):
                assert len(steps(core, action)) == 1, action
            for plugin in ("a6-pub", "a6-sub"):
                renewals = audit_rows(core, actor=f"plugin:{plugin}", action=f"{REGISTRY}/RenewCertificate")
                assert len(renewals) >= 3 and all(r.outcome == "OK" for r in renewals)
                denied = [r for r in audit_rows(core, actor=f"plugin:{plugin}") if r.decision == "deny"]
                assert denied == []
            async with operator_channel(core) as channel:
                listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                    admin_pb.ListPluginsRequest(), timeout=5
                )
            health = {p.plugin_id: p.health for p in listed.plugins}
            assert health["a6-pub"] == health["a6-sub"] == admin_pb.PLUGIN_HEALTH_HEALTHY
        finally:
            await publisher.stop()
            await subscriber.stop()
