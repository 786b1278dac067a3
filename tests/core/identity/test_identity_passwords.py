"""Password hashing (SECURITY B8): Argon2id parameters visible in the stored
string, per-hash salts, upgrade detection, and the length cap."""

from __future__ import annotations

import pytest

from vivified.core.errors import InvalidArgument
from vivified.core.identity import (
    PasswordHasher,
    PasswordParams,
    check_new_password,
    hash_params,
)

pytestmark = pytest.mark.asyncio


async def test_hash_string_shows_argon2id_params_and_salts_differ() -> None:
    hasher = PasswordHasher(PasswordParams())
    first, second = await hasher.hash("same password twice"), await hasher.hash("same password twice")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hash_params(first) == (19456, 2, 1)
    assert first != second  # different salts
    assert await hasher.verify("same password twice", first)
    assert await hasher.verify("same password twice", second)
    assert not await hasher.verify("same password twice!", first)
    assert not await hasher.verify("same password twice", None)  # unknown user: dummy hash, always false


async def test_weaker_stored_hashes_are_flagged_for_upgrade() -> None:
    current = PasswordHasher(PasswordParams())
    stronger = PasswordHasher(PasswordParams(memory_kib=19456, iterations=3))
    old = current.hash_now("a password of some length")
    assert not current.outdated(old)
    assert stronger.outdated(old)
    assert await stronger.verify("a password of some length", old)  # still verifies before the upgrade
    assert stronger.outdated("$2b$12$bcrypt-looking-hash")


@pytest.mark.parametrize("params", [{"memory_kib": 19455}, {"iterations": 1}, {"lanes": 0}])
async def test_parameters_below_the_minimum_are_refused(params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PasswordParams(**params)


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "x" * 1025])
async def test_new_password_length_policy(password: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_new_password(password)
    assert caught.value.reason == "PASSWORD_POLICY"
