"""Sessions with an injected clock: idle and absolute lifetimes (B6), revocation
bound (B5), refresh rotation and family revocation, and the lockout policy."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import sqlalchemy as sa

from vivified.core.clock import ManualClock
from vivified.core.errors import Unauthenticated
from vivified.core.identity import (
    IdentityConfig,
    Lockout,
    Sessions,
    TokenSigner,
    UserRecord,
    UserStore,
    key_from_secret,
    refresh_tokens_table,
)
from vivified.core.traits import RoleCatalogue, TraitCatalogue

pytestmark = pytest.mark.asyncio
CONFIG = IdentityConfig(session_idle_seconds=900, session_absolute_seconds=3600, revocation_check_seconds=5)


class World:
    def __init__(self, engine: sa.Engine, config: IdentityConfig = CONFIG) -> None:
        self.clock = ManualClock()
        self.engine = engine
        self.store = UserStore(self.engine, self.clock)
        signer = TokenSigner(
            key_from_secret(bytes(range(40))), issuer="i", audience="a", clock=self.clock, leeway_seconds=0
        )
        roles = RoleCatalogue.load_default(TraitCatalogue.load_default())
        self.sessions = Sessions(self.engine, self.clock, signer, roles, config)
        # A second core replica on the same database (its own memory).
        self.replica = Sessions(self.engine, self.clock, signer, roles, config)

    def user(self, name: str = "ann", roles: tuple[str, ...] = ("viewer",)) -> UserRecord:
        return self.store.create_now(name, "$argon2id$v=19$m=19456,t=2,p=1$x$y", roles)


async def _reason(awaitable: object) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value.reason


async def test_access_token_gives_the_users_traits(engine: sa.Engine) -> None:
    world = World(engine)
    user = world.user(roles=("operator",))
    tokens = await world.sessions.start(user)
    session = await world.sessions.authenticate(f"Bearer {tokens.access_token}")
    assert session.user_id == user.user_id and "plugin_manager" in session.traits
    assert await _reason(world.sessions.authenticate(tokens.access_token)) == "TOKEN_INVALID"  # no scheme
    assert await _reason(world.sessions.authenticate("Basic abc")) == "TOKEN_INVALID"


async def test_b6_idle_timeout(engine: sa.Engine) -> None:
    world = World(engine, replace(CONFIG, session_idle_seconds=300))
    tokens = await world.sessions.start(world.user())
    bearer = f"Bearer {tokens.access_token}"
    world.clock.advance(200)
    await world.sessions.authenticate(bearer)  # activity resets the idle timer
    world.clock.advance(300)
    await world.sessions.authenticate(bearer)
    world.clock.advance(301)  # idle beyond the timeout; the access token is still unexpired
    assert await _reason(world.sessions.authenticate(bearer)) == "SESSION_EXPIRED"
    assert await _reason(world.sessions.refresh(tokens.refresh_token)) == "SESSION_EXPIRED"


async def test_b6_absolute_lifetime(engine: sa.Engine) -> None:
    world = World(engine, replace(CONFIG, session_idle_seconds=900, session_absolute_seconds=1000))
    tokens = await world.sessions.start(world.user())
    world.clock.advance(600)
    tokens = await world.sessions.refresh(tokens.refresh_token)  # busy session ...
    world.clock.advance(399)
    await world.sessions.authenticate(f"Bearer {tokens.access_token}")
    world.clock.advance(1)  # ... still ends at its absolute lifetime
    assert await _reason(world.sessions.authenticate(f"Bearer {tokens.access_token}")) == "SESSION_EXPIRED"
    assert await _reason(world.sessions.refresh(tokens.refresh_token)) == "SESSION_EXPIRED"


async def test_b5_revocation_is_immediate_here_and_bounded_on_a_replica(engine: sa.Engine) -> None:
    world = World(engine)
    user = world.user()
    tokens = await world.sessions.start(user)
    bearer = f"Bearer {tokens.access_token}"
    await world.sessions.authenticate(bearer)
    await world.replica.authenticate(bearer)  # the replica caches the session state
    await world.sessions.revoke_user(user.user_id, "password_change")
    assert await _reason(world.sessions.authenticate(bearer)) == "SESSION_REVOKED"
    world.clock.advance(4)
    await world.replica.authenticate(bearer)  # within the stated bound (revocation_check_seconds=5)
    world.clock.advance(1)
    assert await _reason(world.replica.authenticate(bearer)) == "SESSION_REVOKED"


async def test_b5_refresh_rotation_and_family_revocation(engine: sa.Engine) -> None:
    world = World(engine)
    first = await world.sessions.start(world.user())
    second = await world.sessions.refresh(first.refresh_token)
    third = await world.sessions.refresh(second.refresh_token)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    await world.sessions.authenticate(f"Bearer {third.access_token}")
    # The rotated first token comes back: stolen. The whole family ends.
    assert await _reason(world.sessions.refresh(first.refresh_token)) == "REFRESH_TOKEN_INVALID"
    assert await _reason(world.sessions.refresh(third.refresh_token)) == "SESSION_REVOKED"
    assert await _reason(world.sessions.authenticate(f"Bearer {third.access_token}")) == "SESSION_REVOKED"
    assert await _reason(world.sessions.refresh("not-a-token")) == "REFRESH_TOKEN_INVALID"
    # Only hashes are stored.
    with world.engine.connect() as conn:
        stored = {r.token_sha256 for r in conn.execute(sa.select(refresh_tokens_table))}
    assert stored and not stored & {first.refresh_token, second.refresh_token, third.refresh_token}


async def test_deleted_or_disabled_user_sessions_end(engine: sa.Engine) -> None:
    world = World(engine)
    user = world.user()
    tokens = await world.sessions.start(user)
    await world.store.update(user.user_id, disabled=True)
    world.clock.advance(5)  # even without revoke_user, the next re-read sees the disabled user
    assert await _reason(world.sessions.authenticate(f"Bearer {tokens.access_token}")) == "SESSION_REVOKED"
    assert await _reason(world.sessions.refresh(tokens.refresh_token)) == "SESSION_REVOKED"


async def test_lockout_is_temporary_escalating_and_counts_concurrent_failures(engine: sa.Engine) -> None:
    world = World(engine)
    user = world.user()
    policy = Lockout(threshold=5, base_seconds=1800, max_seconds=24 * 3600)
    # Failures at once (threads racing on the row) are all counted; none is lost.
    await asyncio.gather(*(world.store.take_attempt(user.user_id, policy, mfa=False) for _ in range(4)))
    stored = await world.store.get(user.user_id)
    assert (stored.failed_logins, stored.locked_until) == (4, 0)
    await asyncio.gather(*(world.store.take_attempt(user.user_id, policy, mfa=False) for _ in range(16)))
    stored = await world.store.get(user.user_id)
    now = int(world.clock.now().timestamp())
    assert (stored.failed_logins, stored.locked_until, stored.lockout_level) == (0, now + 1800, 1)
    for expected in (3600, 7200, 14400, 28800, 57600, 86400, 86400):
        world.clock.advance(86400)  # past any lock
        for _ in range(5):
            await world.store.take_attempt(user.user_id, policy, mfa=False)
        stored = await world.store.get(user.user_id)
        assert stored.locked_until == int(world.clock.now().timestamp()) + expected  # doubles, capped at a day
    # The MFA counter is a separate set of columns.
    assert (stored.mfa_failures, stored.mfa_locked_until) == (0, 0)
