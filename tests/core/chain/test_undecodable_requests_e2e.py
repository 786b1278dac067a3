"""A request whose bytes do not decode — here a string field that is not
valid UTF-8, sent as hand-built bytes on the wire through a generic stub — is
refused by the real core with INVALID_ARGUMENT REQUEST_UNDECODABLE and one
audit record, for unary calls and for messages on a stream (grpc.aio alone
answers UNKNOWN before any interceptor runs)."""

from __future__ import annotations

import grpc
import pytest

from support.clients import admitted_plugin, audit_rows, error_info, operator_channel, plugin_channel
from support.events import EMAIL_SENT, EVENT_BUS
from support.processes import CoreProcess

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

DISABLE = "/vivified.admin.v1.PluginAdminService/DisablePlugin"
NOT_UTF8 = b"\xc3\x28"  # a two-byte sequence with an invalid continuation byte


def field(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (lengths below 128 only)."""
    return bytes([number << 3 | 2, len(value)]) + value


async def test_invalid_utf8_in_a_unary_request_is_invalid_argument_and_audited(core: CoreProcess) -> None:
    request = field(1, b"plugin-" + NOT_UTF8) + field(2, b"a reason")
    async with operator_channel(core) as channel:
        raw = channel.unary_unary(DISABLE)  # no serializers: these bytes go on the wire as they are
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await raw(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(refused.value)
    assert (info.reason, info.domain) == ("REQUEST_UNDECODABLE", "vivified.core")
    rows = [r for r in audit_rows(core, action=DISABLE) if r.reason == "REQUEST_UNDECODABLE"]
    assert [(r.actor, r.outcome) for r in rows] == [("operator:admin", "INVALID_ARGUMENT")]


async def test_invalid_utf8_in_a_stream_message_is_invalid_argument_and_audited(core: CoreProcess) -> None:
    plugin = await admitted_plugin(core, "utf8-sub", subscribes=[EMAIL_SENT])
    opening = field(1, field(1, b"name-" + NOT_UTF8) + field(2, EMAIL_SENT.encode()))  # SubscribeRequest.open
    async with plugin_channel(core, plugin) as channel:
        call = channel.stream_stream(f"{EVENT_BUS}/Subscribe")(iter([opening]))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "REQUEST_UNDECODABLE"
    rows = [r for r in audit_rows(core, actor="plugin:utf8-sub", action=f"{EVENT_BUS}/Subscribe")]
    assert [(r.outcome, r.reason) for r in rows] == [("INVALID_ARGUMENT", "REQUEST_UNDECODABLE")]
