"""Assembles the identity services from their parts, for the core and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from vivified.core.chain import Principal, PrincipalKind, annotate, current_call
from vivified.core.clock import Clock
from vivified.core.errors import PermissionDenied, Unauthenticated
from vivified.core.identity._admin_service import UserAdmin, UserAdminService
from vivified.core.identity._api_key_service import ApiKeyService
from vivified.core.identity._api_keys import ApiKeys
from vivified.core.identity._auth_service import AuthService
from vivified.core.identity._break_glass import BREAK_GLASS_HEADER, BREAK_GLASS_RULE, Announce, BreakGlass
from vivified.core.identity._config import IdentityConfig
from vivified.core.identity._delegation import Delegations
from vivified.core.identity._keys import load_or_create_key
from vivified.core.identity._passwords import PasswordHasher
from vivified.core.identity._permissions import Permissions
from vivified.core.identity._secret_box import SecretBox
from vivified.core.identity._sessions import Sessions
from vivified.core.identity._tokens import TokenSigner
from vivified.core.identity._user_events import PublishEvent, UserEvents
from vivified.core.identity._users import UserStore
from vivified.core.policy import RuleIndex
from vivified.core.traits import RoleCatalogue, TraitCatalogue


def token_key_path(data_dir: Path) -> Path:
    return data_dir / "identity" / "token.key"


def mfa_key_path(data_dir: Path) -> Path:
    return data_dir / "identity" / "mfa.key"


def user_admin(engine: sa.Engine, clock: Clock, config: IdentityConfig, traits: TraitCatalogue) -> UserAdmin:
    """Validated user creation without the network services (the CLI uses it)."""
    return UserAdmin(
        UserStore(engine, clock),
        PasswordHasher(config.password, config.max_concurrent_hashes),
        RoleCatalogue.load_default(traits),
        traits,
        activation_seconds=config.activation_token_seconds,
    )


@dataclass(frozen=True)
class Identity:
    """The identity services of one core, and the chain's bearer check."""

    auth: AuthService
    users: UserAdminService
    api_keys: ApiKeyService
    sessions: Sessions
    keys: ApiKeys
    delegations: Delegations
    roles: RoleCatalogue
    break_glass: BreakGlass

    async def principal(self, metadata: Mapping[str, str]) -> Principal:
        """The chain's hook: a verified access token or API key → a `user`
        principal. An API key principal has no session (it cannot log out,
        change the password or manage keys) and only its scoped traits."""
        authorization, api_key = metadata.get("authorization"), metadata.get("x-api-key")
        if authorization is not None and api_key is not None:
            raise Unauthenticated(
                "present an access token or an API key, not both", reason="IDENTITY_INVALID", domain="vivified.identity"
            )
        emergency = metadata.get(BREAK_GLASS_HEADER)
        if api_key is not None:
            use = await self.keys.authenticate(api_key)
            annotate(api_key_id=use.key_id)
            principal = Principal(kind=PrincipalKind.USER, id=use.user_id, traits=use.traits, api_key_id=use.key_id)
        else:
            session = await self.sessions.authenticate(authorization or "")
            principal = Principal(
                kind=PrincipalKind.USER, id=session.user_id, traits=session.traits, session_id=session.session_id
            )
        if emergency is None:
            return principal
        try:
            traits, activation = await self.break_glass.elevate(
                user_id=principal.id, session_id=principal.session_id, traits=principal.traits, header=emergency
            )
        except PermissionDenied:
            call = current_call()
            if call is not None:  # the refusal's audit record: the verified user, refused by break-glass
                call.principal, call.traits, call.rule_id = principal, principal.traits, BREAK_GLASS_RULE
            raise
        annotate(break_glass=activation.activation_id)
        return Principal(kind=PrincipalKind.USER, id=principal.id, traits=traits, session_id=principal.session_id)


def build_identity(
    *,
    engine: sa.Engine,
    clock: Clock,
    data_dir: Path,
    config: IdentityConfig,
    traits: TraitCatalogue,
    announce_break_glass: Announce,
    publish: PublishEvent,
    policy_index: Callable[[], RuleIndex],
    served_services: tuple[str, ...],
) -> Identity:
    """Load (or create) the token and MFA keys — refusing weak or exposed ones —
    and build the services. `announce_break_glass` audits and alerts a
    break-glass activation (see `_break_glass`); `publish` stores the core's
    `UserCreated` and `UserUpdated` events on the event bus; `policy_index`
    (the chain's current rules) and `served_services` answer WhoAmI's allowed methods."""
    admin = user_admin(engine, clock, config, traits)
    events = UserEvents(publish)
    signer = TokenSigner(
        load_or_create_key(token_key_path(data_dir)),
        issuer=config.issuer,
        audience=config.audience,
        clock=clock,
        leeway_seconds=config.leeway_seconds,
    )
    sessions = Sessions(engine, clock, signer, admin.roles, config)
    keys = ApiKeys(engine, clock, admin.roles, config)
    auth = AuthService(
        store=admin.store,
        hasher=admin.hasher,
        sessions=sessions,
        signer=signer,
        roles=admin.roles,
        config=config,
        box=SecretBox.load_or_create(mfa_key_path(data_dir)),
        events=events,
        permissions=Permissions(policy_index, served_services),
    )
    return Identity(
        auth=auth,
        users=UserAdminService(admin, sessions, keys, events),
        api_keys=ApiKeyService(keys),
        sessions=sessions,
        keys=keys,
        delegations=Delegations(signer, sessions, keys, ttl_seconds=config.delegation_token_seconds),
        roles=admin.roles,
        break_glass=BreakGlass(clock, seconds=config.break_glass_seconds, announce=announce_break_glass),
    )
