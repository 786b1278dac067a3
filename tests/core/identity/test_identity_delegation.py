"""Delegation tokens with an injected clock: audience-bound to one plugin,
about a minute long, signed by the core's key with its fixed algorithm, and
honoured only while the user's session or API key lives (C5); on SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from vivified.core.chain import Principal
from vivified.core.clock import ManualClock
from vivified.core.errors import Unauthenticated
from vivified.core.identity import (
    ACCESS_TYPE,
    ApiKeys,
    Delegations,
    IdentityConfig,
    Sessions,
    TokenSigner,
    UserStore,
    key_from_secret,
)
from vivified.core.traits import RoleCatalogue, TraitCatalogue

pytestmark = pytest.mark.asyncio
CONFIG = IdentityConfig(delegation_token_seconds=60, leeway_seconds=0)


class World:
    def __init__(self, engine: sa.Engine) -> None:
        self.clock = ManualClock()
        self.store = UserStore(engine, self.clock)
        self.signer = TokenSigner(
            key_from_secret(bytes(range(40))),
            issuer="vivified-core",
            audience="vivified-core",
            clock=self.clock,
            leeway_seconds=0,
        )
        roles = RoleCatalogue.load_default(TraitCatalogue.load_default())
        self.sessions = Sessions(engine, self.clock, self.signer, roles, CONFIG)
        self.keys = ApiKeys(engine, self.clock, roles, CONFIG)
        self.delegations = Delegations(self.signer, self.sessions, self.keys, ttl_seconds=60)

    async def signed_in(self, roles: tuple[str, ...] = ("pii_handler",)) -> Principal:
        user = self.store.create_now("pat", "$argon2id$v=19$m=19456,t=2,p=1$x$y", roles)
        tokens = await self.sessions.start(user)
        session = await self.sessions.authenticate(f"Bearer {tokens.access_token}")
        return Principal(kind="user", id=session.user_id, traits=session.traits, session_id=session.session_id)


async def _reason(awaitable: object) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value.reason


def _payload(token: str) -> dict[str, object]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


async def test_token_names_its_plugin_user_and_traits(engine: sa.Engine) -> None:
    world = World(engine)
    principal = await world.signed_in()
    token = world.delegations.issue(world.delegations.of_user(principal), "relay")
    claims = _payload(token)
    assert (claims["aud"], claims["sub"], claims["sid"]) == ("plugin:relay", principal.id, principal.session_id)
    assert claims["exp"] == claims["iat"] + 60  # type: ignore[operator]
    user = await world.delegations.verify(token, "relay")
    assert (user.user_id, user.traits) == (principal.id, principal.traits)


async def test_refused_for_another_plugin_forged_or_of_another_type(engine: sa.Engine) -> None:
    world = World(engine)
    principal = await world.signed_in()
    token = world.delegations.issue(world.delegations.of_user(principal), "relay")
    assert await _reason(world.delegations.verify(token, "bystander")) == "DELEGATION_INVALID"
    header, _, signature = token.split(".")
    claims = _payload(token) | {"traits": ["handles_phi", "handles_pii"]}
    raised = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert await _reason(world.delegations.verify(f"{header}.{raised}.{signature}", "relay")) == "DELEGATION_INVALID"
    # An access token is no delegation token, even with the plugin's audience.
    access, _ = world.signer.issue(ACCESS_TYPE, principal.id, 60, audience="plugin:relay", sid=principal.session_id)
    assert await _reason(world.delegations.verify(access, "relay")) == "DELEGATION_INVALID"


async def test_expires_after_its_lifetime(engine: sa.Engine) -> None:
    world = World(engine)
    principal = await world.signed_in()
    token = world.delegations.issue(world.delegations.of_user(principal), "relay")
    world.clock.advance(60)
    await world.delegations.verify(token, "relay")
    world.clock.advance(1)
    assert await _reason(world.delegations.verify(token, "relay")) == "DELEGATION_EXPIRED"


async def test_ends_with_the_session_or_api_key(engine: sa.Engine) -> None:
    world = World(engine)
    principal = await world.signed_in()
    token = world.delegations.issue(world.delegations.of_user(principal), "relay")
    _, key = await world.keys.create(principal.id, "ci", ("handles_pii",), 3600)
    keyed = Principal(kind="user", id=principal.id, traits=frozenset({"handles_pii"}), api_key_id=key.key_id)
    key_token = world.delegations.issue(world.delegations.of_user(keyed), "relay")
    assert (await world.delegations.verify(key_token, "relay")).traits == frozenset({"handles_pii"})

    assert principal.session_id is not None
    await world.sessions.revoke(principal.session_id, "logout")
    assert await _reason(world.delegations.verify(token, "relay")) == "DELEGATION_REVOKED"
    await world.keys.revoke(key.key_id)
    assert await _reason(world.delegations.verify(key_token, "relay")) == "DELEGATION_REVOKED"
