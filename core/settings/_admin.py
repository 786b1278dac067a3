"""The core-settings half of ConfigService: administrators store, clear and
list runtime overrides. A Set or Clear returns once this core applies the
change (LiveSettings re-reads the overrides); other replicas sharing the
database apply it at their next poll.

Policy admits the same callers as plugin configuration (operators and
`config_manager` users). Every change needs a reason and is audited (the
chain's record of the call names `core-setting/<key>`, the key and the
reason) and kept in history."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from vivified.config.v1 import config_pb2 as pb
from vivified.core.chain import annotate, current_call
from vivified.core.errors import InvalidArgument, PermissionDenied
from vivified.core.settings._apply import (
    NotOverridable,
    database_source,
    effective,
    overridable,
    parse_override,
)
from vivified.core.settings._live import LiveSettings
from vivified.core.settings._store import Override, OverrideStore
from vivified.core.settings._table import BY_KEY, RUNTIME_KEYS, SettingsError

_DOMAIN = "vivified.config"
MAX_REASON_LENGTH = 512


def _actor() -> str:
    call = current_call()
    if call is None or call.principal is None:
        raise PermissionDenied("no caller identity", reason="IDENTITY_MISSING", domain=_DOMAIN)
    return call.principal.actor


def _reason(text: str) -> str:
    reason = text.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
        raise InvalidArgument(
            f"reason is required: 1 to {MAX_REASON_LENGTH} printable characters",
            reason="INVALID_REQUEST",
            domain=_DOMAIN,
        )
    return reason


class CoreSettingsAdmin:
    """Overrides of this core's settings, stored in `store` and applied by `live`."""

    def __init__(self, store: OverrideStore, live: LiveSettings) -> None:
        self._store = store
        self._live = live

    def _entry(self, key: str, stored: Override | None) -> pb.CoreSetting:
        now = self._live.applied
        applied = now.overrides.get(key)
        entry = pb.CoreSetting(
            key=key,
            type=BY_KEY[key].kind,
            effective_value=str(effective(now.config, key)),
            source=database_source(applied)
            if applied is not None
            else dict(now.config.setting_sources).get(key, "default"),
            has_override=stored is not None,
            # The stored override is not (yet) what this core applies: another
            # replica changed it since this core's last poll, or it was refused.
            pending_restart=(stored.value if stored else None) != (applied.value if applied else None),
        )
        if stored is not None:
            entry.override_value = stored.value
            entry.override_actor = stored.updated_by
            entry.override_reason = stored.reason
            entry.override_time.CopyFrom(timestamp_pb2.Timestamp(seconds=stored.updated_at))
        return entry

    def _checked(self, key: str, value: str | None, reason: str) -> tuple[str | None, str]:
        """The canonical value (None to clear) and the reason, both validated;
        the call's audit record names the setting first, so a refusal names it too."""
        annotate(resource=f"core-setting/{key[:64]}", key=key[:64])
        reason = _reason(reason)
        annotate(change_reason=reason)
        try:
            canonical = None if value is None else parse_override(self._live.base, key, value)[1]
            overridable(key)
        except NotOverridable as exc:
            raise InvalidArgument(str(exc), reason="SETTING_NOT_OVERRIDABLE", domain=_DOMAIN) from None
        except SettingsError as exc:
            raise InvalidArgument(str(exc), reason="CONFIG_INVALID", domain=_DOMAIN) from None
        return canonical, reason

    async def set(self, request: pb.SetCoreSettingRequest) -> pb.SetCoreSettingResponse:
        value, reason = self._checked(request.key, request.value, request.reason)
        actor = _actor()
        await self._store.change(request.key, value, actor=actor, reason=reason)
        await self._live.refresh(actor)
        stored = (await self._store.overrides()).get(request.key)
        return pb.SetCoreSettingResponse(setting=self._entry(request.key, stored))

    async def clear(self, request: pb.ClearCoreSettingRequest) -> pb.ClearCoreSettingResponse:
        _, reason = self._checked(request.key, None, request.reason)
        actor = _actor()
        if request.key in await self._store.overrides():
            await self._store.change(request.key, None, actor=actor, reason=reason)
        await self._live.refresh(actor)
        return pb.ClearCoreSettingResponse(setting=self._entry(request.key, None))

    async def list(self) -> pb.ListCoreSettingsResponse:
        stored = await self._store.overrides()
        return pb.ListCoreSettingsResponse(settings=[self._entry(k, stored.get(k)) for k in RUNTIME_KEYS])

    async def history(self, request: pb.ListCoreSettingHistoryRequest) -> pb.ListCoreSettingHistoryResponse:
        size = request.page_size or 100
        if not 1 <= size <= 500:
            raise InvalidArgument("page_size must be 1 to 500", reason="INVALID_REQUEST", domain=_DOMAIN)
        return pb.ListCoreSettingHistoryResponse(
            changes=[
                pb.ConfigChange(
                    key=c.key,
                    old_value=c.old_value or "",
                    new_value=c.new_value or "",
                    change_actor=c.changed_by,
                    reason=c.reason,
                    change_time=timestamp_pb2.Timestamp(seconds=c.changed_at),
                )
                for c in await self._store.history(size)
            ]
        )
