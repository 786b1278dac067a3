"""`PluginLifecycleService`, served by the SDK for every plugin (callable by the core only)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from vivified.sdk._errors import SDK_DOMAIN
from vivified.sdk._status import abort

_log = logging.getLogger("vivified.sdk")

InitHook = Callable[[lifecycle_pb2.InitRequest], Awaitable[None]]


class LifecycleServicer(lifecycle_pb2_grpc.PluginLifecycleServiceServicer):
    """Init runs the plugin's `on_init` hook once, then reports ready; Shutdown
    asks the runtime to stop gracefully (after this call has been answered)."""

    def __init__(
        self,
        *,
        on_init: InitHook | None,
        on_ready: Callable[[], Awaitable[None]],
        on_shutdown_requested: Callable[[str], object],
    ) -> None:
        self._on_init = on_init
        self._on_ready = on_ready
        self._on_shutdown_requested = on_shutdown_requested
        self._lock = asyncio.Lock()
        self.initialised = False

    async def Init(
        self, request: lifecycle_pb2.InitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lifecycle_pb2.InitResponse:
        async with self._lock:
            if self.initialised:
                return lifecycle_pb2.InitResponse(ready=True)
            if self._on_init is not None:
                try:
                    await self._on_init(request)
                except Exception:  # noqa: BLE001 - any failure of the plugin's hook means "not ready"
                    # The hook's error may hold anything; the core learns only that Init failed.
                    _log.exception("the plugin's on_init hook failed")
                    await abort(
                        context,
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "the plugin could not initialise",
                        reason="PLUGIN_INIT_FAILED",
                        domain=SDK_DOMAIN,
                    )
            await self._on_ready()
            self.initialised = True
            _log.info("initialised by the core as %s with traits %s", request.plugin_id, list(request.granted_traits))
            return lifecycle_pb2.InitResponse(ready=True)

    async def Shutdown(
        self, request: lifecycle_pb2.ShutdownRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lifecycle_pb2.ShutdownResponse:
        _log.info("the core asked the plugin to shut down: %s", request.reason[:200])
        self._on_shutdown_requested(request.reason or "shutdown requested by the core")
        return lifecycle_pb2.ShutdownResponse()
