"""Status gate: an unknown, disabled or revoked plugin is refused before policy.

Streaming calls of a plugin are tracked so that disabling or revoking it
closes them at once instead of when the client next writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._deny import Denier

_DOMAIN = "vivified.registry"
_REASONS = {"disabled": "PLUGIN_DISABLED", "revoked": "PLUGIN_REVOKED"}


class PluginView:
    """What the gate needs of a plugin: its status and granted traits."""

    __slots__ = ("status", "traits")

    def __init__(self, status: str, traits: frozenset[str]) -> None:
        self.status = status
        self.traits = traits


class StreamTracker:
    """Open streaming calls per plugin, so they can be ended on revocation."""

    def __init__(self) -> None:
        self._tasks: dict[str, set[asyncio.Task[object]]] = {}

    def add(self, plugin_id: str, task: asyncio.Task[object]) -> None:
        self._tasks.setdefault(plugin_id, set()).add(task)

    def discard(self, plugin_id: str, task: asyncio.Task[object]) -> None:
        tasks = self._tasks.get(plugin_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[plugin_id]

    def close_all(self, plugin_id: str) -> int:
        """Cancel every open stream of a plugin; returns how many."""
        tasks = self._tasks.pop(plugin_id, set())
        for task in tasks:
            task.cancel()
        return len(tasks)


class StatusGateLayer:
    """Refuses plugins that are not active; sets `call.traits` for policy."""

    def __init__(self, lookup: Callable[[str], PluginView | None], streams: StreamTracker, denier: Denier) -> None:
        self._lookup = lookup
        self._streams = streams
        self._denier = denier

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        principal = call.principal
        if principal is None or principal.kind != "plugin":
            await proceed(call)
            return
        view = self._lookup(principal.id)
        if view is None or view.status != "active":
            status = view.status if view else "unknown"
            await self._denier.deny(
                call,
                grpc.StatusCode.PERMISSION_DENIED,
                f"plugin {principal.id!r} is {status}",
                reason=_REASONS.get(status, "PLUGIN_UNKNOWN"),
                rule_id="status-gate",
                domain=_DOMAIN,
            )
            return
        call.traits = view.traits
        if not call.streaming:
            await proceed(call)
            return
        task = asyncio.current_task()
        if task is None:
            await proceed(call)
            return
        self._streams.add(principal.id, task)
        try:
            await proceed(call)
        finally:
            self._streams.discard(principal.id, task)
