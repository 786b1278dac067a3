"""Password hashing with Argon2id, PHC-encoded so the parameters are visible.

    $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>

Hashing runs in a worker thread under a semaphore: it takes ~0.1 s and
m KiB of memory, so both the event loop and memory stay safe under a flood.
"""

from __future__ import annotations

import asyncio
import os
import re

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from vivified.core.errors import InvalidArgument
from vivified.core.identity._config import PasswordParams

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
_PARAMS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")
_DOMAIN = "vivified.identity"


def check_new_password(password: str) -> None:
    """Refuse a password that is too short or absurdly long (PASSWORD_POLICY)."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidArgument(
            f"a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            reason="PASSWORD_POLICY",
            domain=_DOMAIN,
        )


def hash_params(encoded: str) -> tuple[int, int, int] | None:
    """(memory_kib, iterations, lanes) of a stored hash, None if not Argon2id."""
    match = _PARAMS.match(encoded)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


class PasswordHasher:
    """Hashes and verifies passwords; verification reports stale parameters."""

    def __init__(self, params: PasswordParams, max_concurrent: int = 4) -> None:
        self._params = params
        self._slots = asyncio.Semaphore(max_concurrent)
        # Verified against when the user does not exist, so an unknown user
        # costs the same time as a wrong password.
        self._dummy = self.hash_now(os.urandom(16).hex())

    def hash_now(self, password: str) -> str:
        """Hash on the calling thread (the CLI and start-up use this)."""
        kdf = Argon2id(
            salt=os.urandom(16),
            length=32,
            iterations=self._params.iterations,
            lanes=self._params.lanes,
            memory_cost=self._params.memory_kib,
        )
        return kdf.derive_phc_encoded(password.encode("utf-8"))

    @staticmethod
    def _verify_now(password: str, encoded: str) -> bool:
        try:
            Argon2id.verify_phc_encoded(password.encode("utf-8"), encoded)
        except (InvalidKey, ValueError):
            return False
        return True

    def outdated(self, encoded: str) -> bool:
        """True when `encoded` was made with less cost than the current parameters."""
        found = hash_params(encoded)
        p = self._params
        return found is None or any(
            have < want for have, want in zip(found, (p.memory_kib, p.iterations, p.lanes), strict=True)
        )

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hash_now, password)

    async def verify(self, password: str, encoded: str | None) -> bool:
        """Check `password`; with `encoded` None, burn the same time and fail."""
        async with self._slots:
            if encoded is None:
                await asyncio.to_thread(self._verify_now, password, self._dummy)
                return False
            return await asyncio.to_thread(self._verify_now, password, encoded)
