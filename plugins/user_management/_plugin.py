"""Running the directory: store, servicer and subscriptions on one runtime."""

from __future__ import annotations

import asyncio
import signal

from vivified.events.v1.canonical_pb2 import EmailFailed, EmailSent, UserCreated, UserUpdated
from vivified.plugins.user_management._events import DirectoryEvents
from vivified.plugins.user_management._service import DirectoryServicer
from vivified.plugins.user_management._store import ProfileStore
from vivified.sdk import PluginRuntime, PluginSettings

SUBSCRIPTION = "people"


class UserManagementPlugin:
    """The `user-management` plugin: a `DirectoryService` over its own SQLite
    store, fed by the core's user events and the email gateway's results.

    Example::

        plugin = UserManagementPlugin(PluginSettings.from_env(os.environ))
        await plugin.start()
        await plugin.runtime.wait_closed()
        await plugin.stop()
    """

    def __init__(self, settings: PluginSettings) -> None:
        self.store = ProfileStore(settings.require_data_dir())
        self.runtime = PluginRuntime([DirectoryServicer(self.store)], settings)
        self._events = DirectoryEvents(self.store)

    async def start(self) -> None:
        """Register, serve, and open the durable `people` subscription."""
        await self.runtime.start()
        handlers = {
            UserCreated: self._events.user_created,
            UserUpdated: self._events.user_updated,
            EmailSent: self._events.email_sent,
            EmailFailed: self._events.email_failed,
        }
        await self.runtime.subscribe(SUBSCRIPTION, handlers).opened()  # type: ignore[arg-type]

    async def stop(self, reason: str = "shutdown") -> None:
        await self.runtime.stop(reason)
        self.store.close()


async def serve_until_stopped(settings: PluginSettings) -> None:
    """Run until SIGTERM/SIGINT or the core's Shutdown; raise the runtime's failure, if any."""
    plugin = UserManagementPlugin(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await plugin.start()
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(plugin.runtime.wait_closed())}
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await plugin.stop("signal" if stop.is_set() else "shutdown")
    if plugin.runtime.failure is not None:
        raise plugin.runtime.failure
