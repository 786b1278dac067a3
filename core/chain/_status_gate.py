"""Status gate: an unknown, disabled or revoked plugin is refused before policy.

Streaming calls of a plugin are tracked so that disabling or revoking it
closes them at once instead of when the client next writes.

Fail closed across replicas: while the registry view of this core is older
than its bound (it cannot read registry changes other replicas commit), every
call of a certificate principal (plugin or operator) is refused with
`UNAVAILABLE` / `REGISTRY_STALE`, since a revocation made elsewhere may not be
known here; the caller may retry on another replica."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._outcome import Denied
from vivified.core.kinds import PluginStatus, PrincipalKind

_DOMAIN = "vivified.registry"
_REASONS: dict[str, str] = {PluginStatus.DISABLED: "PLUGIN_DISABLED", PluginStatus.REVOKED: "PLUGIN_REVOKED"}


class PluginState(Protocol):
    """What the gate reads of a plugin (the registry's PluginRecord has it)."""

    @property
    def status(self) -> PluginStatus: ...

    @property
    def granted_traits(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class PluginView:
    """A PluginState for tests and benchmarks that run the chain without a registry."""

    status: PluginStatus
    granted_traits: frozenset[str]


class StreamTracker:
    """Open streaming calls per plugin, so they can be ended on revocation.

    Each tracked stream waits on its own `asyncio.Event`; `close_all` sets it
    with the reason, and the stream's handler task (not another task) cancels
    the inner work and aborts with PERMISSION_DENIED and that reason."""

    def __init__(self) -> None:
        self._open: dict[str, dict[asyncio.Event, list[str]]] = {}

    def add(self, plugin_id: str) -> tuple[asyncio.Event, list[str]]:
        event, reason = asyncio.Event(), ["PLUGIN_REVOKED"]
        self._open.setdefault(plugin_id, {})[event] = reason
        return event, reason

    def discard(self, plugin_id: str, event: asyncio.Event) -> None:
        calls = self._open.get(plugin_id)
        if calls is not None:
            calls.pop(event, None)
            if not calls:
                del self._open[plugin_id]

    def close_all(self, plugin_id: str, reason: str = "PLUGIN_REVOKED") -> int:
        """End every open stream of a plugin; returns how many."""
        calls = self._open.pop(plugin_id, {})
        for event, slot in calls.items():
            slot[0] = reason
            event.set()
        return len(calls)

    def close_every(self, reason: str) -> int:
        """End every open stream of every plugin (the registry view went stale)."""
        return sum(self.close_all(plugin_id, reason) for plugin_id in list(self._open))


class StatusGateLayer:
    """Refuses plugins that are not active; sets `call.traits` for policy."""

    def __init__(
        self,
        lookup: Callable[[str], PluginState | None],
        streams: StreamTracker,
        stale: Callable[[], str | None] | None = None,
    ) -> None:
        self._lookup = lookup
        self._streams = streams
        self._stale = stale

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        principal = call.principal
        if principal is not None and principal.cert_serial is not None and self._stale is not None:
            problem = self._stale()
            if problem is not None:
                raise Denied(
                    grpc.StatusCode.UNAVAILABLE,
                    problem,
                    reason="REGISTRY_STALE",
                    rule_id="status-gate",
                    domain=_DOMAIN,
                )
        if principal is None or principal.kind != PrincipalKind.PLUGIN:
            await proceed(call)
            return
        view = self._lookup(principal.id)
        if view is None or view.status != PluginStatus.ACTIVE:
            status = view.status if view else "unknown"
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"plugin {principal.id!r} is {status}",
                reason=_REASONS.get(status, "PLUGIN_UNKNOWN"),
                rule_id="status-gate",
                domain=_DOMAIN,
            )
        call.traits = view.granted_traits
        if not call.streaming:
            await proceed(call)
            return
        closed, reason = self._streams.add(principal.id)
        work = asyncio.ensure_future(proceed(call))
        waiter = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._streams.discard(principal.id, closed)
            waiter.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if not work.cancelled() and not closed.is_set():
            work.result()
            return
        # The stream's opening was recorded; its closure is a decision of its own
        # (revoked, disabled, re-approved without a trait, registry stale): one record.
        # A stale registry may mean an unreachable database: cut first, record after.
        # (UNAVAILABLE then, like the calls refused meanwhile: the plugin may be fine.)
        stale = reason[0] == "REGISTRY_STALE"
        raise Denied(
            grpc.StatusCode.UNAVAILABLE if stale else grpc.StatusCode.PERMISSION_DENIED,
            f"plugin {principal.id!r} lost access ({reason[0]}); stream closed",
            reason=reason[0],
            rule_id="status-gate",
            domain=_DOMAIN,
            closure=True,
            record_after=stale,
        )
