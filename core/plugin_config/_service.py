"""ConfigService: administrators set and read plugin config values; a plugin
reads and watches its own.

Policy admits operators and `config_manager` users to the admin methods and
plugins to GetMyConfig/WatchMyConfig. A plugin's own methods take no plugin
id: the plugin is the caller's certificate identity, so no request can name
another plugin's configuration (BOLA, C4) — asking for one through the admin
methods is refused by policy the same way whether the plugin exists or not.
Every change is audited (the chain's record of the call carries the key and
the reason) and kept in history; secrets are masked everywhere except in the
owning plugin's own reads, and a secret the manifest has the core inject
(`security.injected_credentials`) is masked in those too: only the core's
egress lane reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.config.v1 import config_pb2 as pb
from vivified.config.v1 import config_pb2_grpc
from vivified.core.chain import PrincipalKind, annotate, current_call
from vivified.core.errors import InvalidArgument, NotFound, PermissionDenied
from vivified.core.kinds import PluginStatus
from vivified.core.manifest import injected_config_keys, type_name, value_problem
from vivified.core.plugin_config._store import MASK, PluginConfigStore, StoredValue
from vivified.core.registry import PluginRecord
from vivified.core.settings import CoreSettingsAdmin
from vivified.manifest.v1.manifest_pb2 import ConfigField, ConfigFieldType

_DOMAIN = "vivified.config"
_SECRET = ConfigFieldType.CONFIG_FIELD_TYPE_SECRET
MAX_REASON_LENGTH = 512


def _invalid(message: str, reason: str = "CONFIG_INVALID") -> InvalidArgument:
    return InvalidArgument(message, reason=reason, domain=_DOMAIN)


def _actor() -> str:
    call = current_call()
    if call is None or call.principal is None:
        raise PermissionDenied("no caller identity", reason="IDENTITY_MISSING", domain=_DOMAIN)
    return call.principal.actor


class ConfigService(config_pb2_grpc.ConfigServiceServicer):
    """Plugin configuration over gRPC (see the module docstring for who may call what)."""

    def __init__(
        self, store: PluginConfigStore, lookup: Callable[[str], PluginRecord | None], core_settings: CoreSettingsAdmin
    ) -> None:
        self._store = store
        self._lookup = lookup
        self._core_settings = core_settings

    def _plugin(self, plugin_id: str) -> PluginRecord:
        record = self._lookup(plugin_id) if plugin_id else None
        if record is None or record.status == PluginStatus.REVOKED:
            raise NotFound(f"no plugin with id {plugin_id!r}", reason="PLUGIN_NOT_FOUND", domain=_DOMAIN)
        return record

    def _own_plugin(self) -> PluginRecord:
        call = current_call()
        principal = call.principal if call is not None else None
        if principal is None or principal.kind != PrincipalKind.PLUGIN:
            # Policy admits only plugins here; this keeps it so if a rule widens.
            raise PermissionDenied("only a plugin reads its own configuration", reason="POLICY_DENIED", domain=_DOMAIN)
        return self._plugin(principal.id)

    def _value(self, plugin_id: str, field: ConfigField, stored: StoredValue | None, *, owner: bool) -> pb.ConfigValue:
        secret = field.type == _SECRET
        message = pb.ConfigValue(key=field.name, type=field.type, required=field.required)
        # A row whose sealing no longer matches the declared type (the manifest
        # was re-approved with a changed type) does not count as a value.
        if stored is not None and (stored.key_id is not None) == secret:
            if not secret:
                text = stored.value
            elif owner:
                text = self._store.keyring.open(plugin_id, field.name, stored.key_id or "", stored.value)
            else:
                text = MASK
            if secret or value_problem(field, text) is None:
                message.value = text
                message.source = pb.CONFIG_VALUE_SOURCE_ADMIN
                message.update_actor = stored.updated_by
                message.update_time.CopyFrom(timestamp_pb2.Timestamp(seconds=stored.updated_at))
                return message
        if field.default_value:
            message.value = field.default_value
            message.source = pb.CONFIG_VALUE_SOURCE_DEFAULT
        else:
            message.source = pb.CONFIG_VALUE_SOURCE_UNSET
        return message

    async def _values(self, record: PluginRecord, *, owner: bool) -> list[pb.ConfigValue]:
        stored = await self._store.values(record.plugin_id)
        injected = injected_config_keys(record.manifest)
        return [
            self._value(record.plugin_id, f, stored.get(f.name), owner=owner and f.name not in injected)
            for f in record.manifest.config
        ]

    async def _my_config(self, record: PluginRecord) -> pb.GetMyConfigResponse:
        values = await self._values(record, owner=True)
        missing = [v.key for v in values if v.required and v.source == pb.CONFIG_VALUE_SOURCE_UNSET]
        return pb.GetMyConfigResponse(values=values, missing_keys=missing)

    async def SetPluginConfigValue(
        self, request: pb.SetPluginConfigValueRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetPluginConfigValueResponse:
        record = self._plugin(request.plugin_id)
        reason = request.reason.strip()
        if not reason or len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
            raise _invalid(f"reason is required: 1 to {MAX_REASON_LENGTH} printable characters", "INVALID_REQUEST")
        fields = {f.name: f for f in record.manifest.config}
        field = fields.get(request.key)
        annotate(key=request.key[:64], change_reason=reason)
        if field is None:
            known = ", ".join(fields) or "(the manifest declares no config)"
            raise _invalid(f"plugin {record.plugin_id!r} has no config key {request.key[:64]!r}; known keys: {known}")
        problem = value_problem(field, request.value)
        if problem is not None:
            # Never echo the value: it may be a secret.
            raise _invalid(f"{field.name}: the value {problem} ({type_name(field.type)})")
        stored = await self._store.set(
            record.plugin_id, field.name, request.value, secret=field.type == _SECRET, actor=_actor(), reason=reason
        )
        return pb.SetPluginConfigValueResponse(value=self._value(record.plugin_id, field, stored, owner=False))

    async def GetPluginConfig(
        self, request: pb.GetPluginConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetPluginConfigResponse:
        record = self._plugin(request.plugin_id)
        return pb.GetPluginConfigResponse(values=await self._values(record, owner=False))

    async def ListPluginConfigHistory(
        self, request: pb.ListPluginConfigHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPluginConfigHistoryResponse:
        record = self._plugin(request.plugin_id)
        size = request.page_size or 100
        if not 1 <= size <= 500:
            raise _invalid("page_size must be 1 to 500", "INVALID_REQUEST")
        changes = await self._store.history(record.plugin_id, size)
        return pb.ListPluginConfigHistoryResponse(
            changes=[
                pb.ConfigChange(
                    key=c.key,
                    old_value=c.old_value or "",
                    new_value=c.new_value,
                    change_actor=c.changed_by,
                    reason=c.reason,
                    change_time=timestamp_pb2.Timestamp(seconds=c.changed_at),
                )
                for c in changes
            ]
        )

    async def GetMyConfig(
        self, request: pb.GetMyConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMyConfigResponse:
        return await self._my_config(self._own_plugin())

    async def WatchMyConfig(
        self, request: pb.WatchMyConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchMyConfigResponse]:
        record = self._own_plugin()
        queue = self._store.watch(record.plugin_id)
        try:
            while True:
                # The manifest may have been re-approved: read the record afresh.
                current = self._plugin(record.plugin_id)
                yield pb.WatchMyConfigResponse(config=await self._my_config(current))
                await queue.get()
        finally:
            self._store.unwatch(record.plugin_id, queue)

    async def SetCoreSetting(
        self, request: pb.SetCoreSettingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetCoreSettingResponse:
        return await self._core_settings.set(request)

    async def ClearCoreSetting(
        self, request: pb.ClearCoreSettingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClearCoreSettingResponse:
        return await self._core_settings.clear(request)

    async def ListCoreSettings(
        self, request: pb.ListCoreSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCoreSettingsResponse:
        return await self._core_settings.list()

    async def ListCoreSettingHistory(
        self, request: pb.ListCoreSettingHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCoreSettingHistoryResponse:
        return await self._core_settings.history(request)
