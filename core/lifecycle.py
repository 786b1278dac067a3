"""One start/stop protocol for the core's components.

A component is anything with `async start()` and `async stop()`. `Components`
starts them one at a time, in the order the core lists them, and records each
one that started on an `AsyncExitStack`; `stop()` then stops exactly those, in
reverse order. The same unwinding runs when a later component fails to start,
so a failed start leaves nothing running (no listening ports, open stores or
background tasks). A stop that raises does not keep the others from stopping.

`Hooks` adapts parts whose own methods differ (a synchronous `start()`,
`close()`, `stop(grace)`, or only one of the two)."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

_log = logging.getLogger(__name__)
SLOW_STOP_SECONDS = 1.0
"""A component taking this long to stop is named in a warning (a slow stop delays the final checkpoint)."""


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _nothing() -> None:
    return None


async def _call(hook: Callable[[], Awaitable[None] | None]) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


@dataclass(frozen=True)
class Hooks:
    """A component from two callables, either synchronous or async."""

    on_start: Callable[[], Awaitable[None] | None] = _nothing
    on_stop: Callable[[], Awaitable[None] | None] = _nothing

    async def start(self) -> None:
        await _call(self.on_start)

    async def stop(self) -> None:
        await _call(self.on_stop)


class Components:
    """The started components of one process, stopped in reverse order."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._started: list[str] = []

    @property
    def started(self) -> tuple[str, ...]:
        """Names of the running components, in start order."""
        return tuple(self._started)

    async def start(self, name: str, component: Component) -> None:
        """Start `component`; once started, it is stopped by `stop()`. A
        component whose start raised is not stopped (it never ran)."""
        await component.start()
        self._started.append(name)
        self._stack.push_async_callback(self._stop_one, name, component)

    async def _stop_one(self, name: str, component: Component) -> None:
        self._started.remove(name)
        began = time.monotonic()
        try:
            await component.stop()
        finally:
            took = time.monotonic() - began
            if took >= SLOW_STOP_SECONDS:
                _log.warning("stopping %s took %.1f s", name, took)
            else:
                _log.debug("stopped %s in %.3f s", name, took)

    async def stop(self) -> None:
        """Stop every started component, last started first. Idempotent."""
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()

    async def unwind(self) -> None:
        """`stop()` after a failed start: a component failing to stop is
        logged, so the start's own error is the one that propagates."""
        try:
            await self.stop()
        except Exception:  # noqa: BLE001 - logged; the start's error is raised by the caller
            _log.exception("stopping the components a failed start had started")
