"""Appends to an embedded event store forever, printing each acknowledged
event id; a test kills it with SIGKILL and checks that every printed id survived.

Usage: python event_append_child.py <events.db> <subscription>
"""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import sys

from vivified.core.clock import SystemClock
from vivified.core.events._config import EventsConfig
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._store import NewEvent


async def main(path: pathlib.Path, subscription: str) -> None:
    store = EmbeddedEventStore(path, lambda: EventsConfig(), SystemClock())
    await store.start()
    await store.subscribe(subscription, ["OrderPlaced"])
    print("ready", flush=True)
    counter = itertools.count()

    async def writer() -> None:
        while True:
            ids = [f"e{next(counter)}" for _ in range(5)]
            await store.append([NewEvent(i, "OrderPlaced", "child", i.encode()) for i in ids])
            # Printed only after the append was acknowledged.
            sys.stdout.write("".join(f"{i}\n" for i in ids))
            sys.stdout.flush()

    # Several concurrent writers, so acknowledgements come from shared commits.
    await asyncio.gather(*(writer() for _ in range(8)))


if __name__ == "__main__":
    asyncio.run(main(pathlib.Path(sys.argv[1]), sys.argv[2]))
