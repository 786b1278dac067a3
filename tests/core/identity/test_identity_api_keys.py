"""API keys with an injected clock: expiry, owner state, scopes capped by the
owner's current traits, and constant-time secret comparison (B7)."""

from __future__ import annotations

import hmac

import pytest
import sqlalchemy as sa

from vivified.core.clock import ManualClock
from vivified.core.errors import Unauthenticated
from vivified.core.identity import ApiKeys, IdentityConfig, UserStore
from vivified.core.identity import _api_keys as api_keys_module
from vivified.core.traits import RoleCatalogue, TraitCatalogue

pytestmark = pytest.mark.asyncio


def _setup(engine: sa.Engine) -> tuple[ManualClock, UserStore, ApiKeys]:
    clock = ManualClock()
    roles = RoleCatalogue.load_default(TraitCatalogue.load_default())
    return clock, UserStore(engine, clock), ApiKeys(engine, clock, roles, IdentityConfig())


async def _refused(keys: ApiKeys, presented: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await keys.authenticate(presented)
    assert caught.value.reason == "API_KEY_INVALID"


async def test_expiry_and_owner_state(engine: sa.Engine) -> None:
    clock, store, keys = _setup(engine)
    owner = store.create_now("ops", "$argon2id$x", ("operator",))
    key, record = await keys.create(owner.user_id, "ci", ("plugin_manager", "viewer"), ttl_seconds=3600)
    use = await keys.authenticate(key)
    assert (use.user_id, use.traits) == (owner.user_id, frozenset({"plugin_manager", "viewer"}))
    # The owner loses plugin_manager: the key loses it too (after forget or the re-read bound).
    await store.update(owner.user_id, roles=("viewer",))
    keys.forget_owner(owner.user_id)
    assert (await keys.authenticate(key)).traits == {"viewer"}
    await store.update(owner.user_id, disabled=True)
    keys.forget_owner(owner.user_id)
    await _refused(keys, key)
    await store.update(owner.user_id, disabled=False)
    keys.forget_owner(owner.user_id)
    await keys.authenticate(key)
    clock.advance(3600)
    await _refused(keys, key)
    assert record.expires_at == record.created_at + 3600


@pytest.mark.parametrize("presented", ["", "vk_", "vk_vak_123_abc", "Bearer x", "vk_vak_" + "0" * 24 + "_" + "A" * 43])
async def test_malformed_and_unknown_keys(engine: sa.Engine, presented: str) -> None:
    _, _, keys = _setup(engine)
    await _refused(keys, presented)


async def test_b7_secret_is_compared_in_constant_time(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _, store, keys = _setup(engine)
    owner = store.create_now("ops", "$argon2id$x", ("viewer",))
    key, _ = await keys.create(owner.user_id, "ci", ("viewer",), ttl_seconds=3600)
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(api_keys_module.hmac, "compare_digest", recording)
    # Same key id, secret sharing a long prefix with the real one.
    near_miss = key[:-1] + ("A" if not key.endswith("A") else "B")
    await _refused(keys, near_miss)
    assert len(compared) == 1 and len(compared[0][0]) == len(compared[0][1]) == 64  # digests, not raw prefixes
