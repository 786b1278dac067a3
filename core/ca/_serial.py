"""Certificate serial numbers from an injectable source of random bytes."""

from __future__ import annotations

from collections.abc import Callable

RandomBytes = Callable[[int], bytes]


def random_serial(random_bytes: RandomBytes) -> int:
    """128 random bits as a positive, non-zero serial (RFC 5280 4.1.2.2)."""
    while True:
        serial = int.from_bytes(random_bytes(16), "big")
        if serial:
            return serial
