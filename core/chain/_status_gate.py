"""Status gate: an unknown, disabled or revoked plugin is refused before policy.

Streaming calls of a plugin are tracked so that disabling or revoking it
closes them at once instead of when the client next writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._deny import Denier
from vivified.core.chain._status import abort_with

_log = logging.getLogger(__name__)

_DOMAIN = "vivified.registry"
_REASONS = {"disabled": "PLUGIN_DISABLED", "revoked": "PLUGIN_REVOKED"}


class PluginView:
    """What the gate needs of a plugin: its status and granted traits."""

    __slots__ = ("status", "traits")

    def __init__(self, status: str, traits: frozenset[str]) -> None:
        self.status = status
        self.traits = traits


class StreamTracker:
    """Open streaming calls per plugin, so they can be ended on revocation.

    Ending a stream sends PERMISSION_DENIED with the reason to the client
    first (grpc.aio's abort transmits the status at once), then cancels the
    handler task so nothing more is delivered on it."""

    def __init__(self) -> None:
        self._open: dict[str, dict[asyncio.Task[object], Any]] = {}
        self._closers: set[asyncio.Task[None]] = set()

    def add(self, plugin_id: str, task: asyncio.Task[object], context: Any) -> None:
        self._open.setdefault(plugin_id, {})[task] = context

    def discard(self, plugin_id: str, task: asyncio.Task[object]) -> None:
        calls = self._open.get(plugin_id)
        if calls is not None:
            calls.pop(task, None)
            if not calls:
                del self._open[plugin_id]

    def close_all(self, plugin_id: str, reason: str = "PLUGIN_REVOKED") -> int:
        """End every open stream of a plugin; returns how many."""
        calls = self._open.pop(plugin_id, {})
        for task, context in calls.items():
            closer = asyncio.ensure_future(self._end(task, context, plugin_id, reason))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        return len(calls)

    @staticmethod
    async def _end(task: asyncio.Task[object], context: Any, plugin_id: str, reason: str) -> None:
        message = f"plugin {plugin_id!r} lost access ({reason}); stream closed"
        try:
            await abort_with(context, grpc.StatusCode.PERMISSION_DENIED, message, reason, _DOMAIN)
        except grpc.aio.AbortError:
            pass
        except Exception:  # the call may already have ended; cancelling below still applies
            _log.debug("stream of %s already finished", plugin_id)
        task.cancel()


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
        self._streams.add(principal.id, task, call.context)
        try:
            await proceed(call)
        finally:
            self._streams.discard(principal.id, task)
