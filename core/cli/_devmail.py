"""The development profile's mail: `vivified up` runs a local SMTP sink
(`vivified.core.devsmtp`) writing to `<data-dir>/outbox/<n>.eml`, grants the
email gateway a tunnel to exactly the sink's address, and points the
gateway's configuration at the sink unless an administrator configured
another server (a setting this module wrote itself carries DEV_REASON, so
only those are ever rewritten, e.g. when the sink's port changes)."""

from __future__ import annotations

import dataclasses
import logging

import grpc

from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.core.cli._client import OperatorTarget, describe, open_channel
from vivified.core.config import CoreConfig
from vivified.core.devsmtp import SmtpSink
from vivified.core.egress import TunnelGrant

_log = logging.getLogger("vivified.up")
GATEWAY = "email-gateway"
SINK_HOST = "127.0.0.1"
DEV_REASON = "development profile: the local SMTP sink of vivified up"
DEV_SENDER = "vivified@vivified.local"


async def start_sink(config: CoreConfig) -> tuple[SmtpSink, CoreConfig]:
    """Start the sink; the config with the gateway's one tunnel grant added."""
    sink = SmtpSink(config.data_dir / "outbox", host=SINK_HOST)
    port = await sink.start()
    grant = TunnelGrant(GATEWAY, SINK_HOST, port)
    egress = dataclasses.replace(config.egress, tunnel_grants=(*config.egress.tunnel_grants, grant))
    return sink, dataclasses.replace(config, egress=egress)


def _ours(key: str, values: dict[str, config_pb2.ConfigValue], history: list[config_pb2.ConfigChange]) -> bool:
    """Unset (or at its default), or last set by this module."""
    value = values.get(key)
    if value is None or value.source != config_pb2.CONFIG_VALUE_SOURCE_ADMIN:
        return True
    changes = [c for c in history if c.key == key]
    latest = max(changes, key=lambda c: c.change_time.ToDatetime(), default=None)
    return latest is not None and latest.reason == DEV_REASON


async def point_gateway_at_sink(target: OperatorTarget, port: int) -> bool:
    """Configure the gateway for the sink unless an administrator chose another
    SMTP server; whether it now sends to the sink."""
    async with open_channel(target) as channel:
        stub = config_pb2_grpc.ConfigServiceStub(channel)
        try:
            current = await stub.GetPluginConfig(config_pb2.GetPluginConfigRequest(plugin_id=GATEWAY), timeout=10)
            history = await stub.ListPluginConfigHistory(
                config_pb2.ListPluginConfigHistoryRequest(plugin_id=GATEWAY, page_size=500), timeout=10
            )
            values = {v.key: v for v in current.values}
            changes = list(history.changes)
            if not _ours("smtp_host", values, changes):
                _log.info("email-gateway sends to the SMTP server an administrator configured, not the local sink")
                return False
            wanted = {"smtp_host": SINK_HOST, "smtp_port": str(port), "smtp_tls": "none"}
            if _ours("smtp_sender", values, changes):
                wanted["smtp_sender"] = DEV_SENDER
            for key, value in wanted.items():
                if (
                    key in values
                    and values[key].value == value
                    and values[key].source == config_pb2.CONFIG_VALUE_SOURCE_ADMIN
                ):
                    continue
                await stub.SetPluginConfigValue(
                    config_pb2.SetPluginConfigValueRequest(plugin_id=GATEWAY, key=key, value=value, reason=DEV_REASON),
                    timeout=10,
                )
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    return True
