"""User identity: accounts with roles, Argon2id passwords, lockout, TOTP MFA,
sessions with signed access tokens and rotating refresh tokens.

- `build_identity` assembles `AuthService`, `UserAdminService` and the chain's
  bearer-token check (`Identity.principal`) for a core; `UserEvents` publishes
  `UserCreated`/`UserUpdated` through the callable the core wires in.
- `user_admin` gives the CLI validated user creation on the data dir.
- `Delegations` carries a user's identity through plugins (delegation tokens).
- `ApiKeyService` issues scoped API keys for automation (`x-api-key` metadata).
- `BreakGlass` gives a `break_glass` user emergency traits for a short,
  audited and alerted window (`x-vivified-break-glass: <reason>`).
- Tables (on `vivified.core.db.metadata`): users, user_sessions,
  refresh_tokens, mfa_backup_codes, api_keys.
"""

from vivified.core.identity._admin_service import UserAdmin, UserAdminService
from vivified.core.identity._api_key_service import ApiKeyService
from vivified.core.identity._api_keys import ApiKeyRecord, ApiKeys, KeyUse
from vivified.core.identity._auth_service import AuthService
from vivified.core.identity._break_glass import (
    BREAK_GLASS_HEADER,
    BREAK_GLASS_RULE,
    BREAK_GLASS_TRAIT,
    EMERGENCY_TRAITS,
    Activation,
    BreakGlass,
)
from vivified.core.identity._config import IdentityConfig, PasswordParams
from vivified.core.identity._delegation import (
    DELEGATION_HEADER,
    ON_BEHALF_OF_HEADER,
    Delegations,
    Delegator,
)
from vivified.core.identity._keys import (
    SigningKey,
    TokenKeyInsecure,
    key_from_secret,
    load_or_create_key,
)
from vivified.core.identity._passwords import (
    PasswordHasher,
    check_new_password,
    hash_params,
)
from vivified.core.identity._schema import (
    api_keys_table,
    mfa_backup_codes_table,
    refresh_tokens_table,
    user_sessions_table,
    users_table,
)
from vivified.core.identity._sessions import Sessions, Tokens, UserSession
from vivified.core.identity._tokens import (
    ACCESS_TYPE,
    DELEGATION_TYPE,
    MFA_TYPE,
    Claims,
    TokenError,
    TokenSigner,
)
from vivified.core.identity._totp import hotp, match_step, provisioning_uri, totp
from vivified.core.identity._user_events import PublishEvent, UserEvents
from vivified.core.identity._users import Lockout, UserRecord, UserStore
from vivified.core.identity._wiring import (
    Identity,
    build_identity,
    token_key_path,
    user_admin,
)

__all__ = [
    "ACCESS_TYPE",
    "BREAK_GLASS_HEADER",
    "BREAK_GLASS_RULE",
    "BREAK_GLASS_TRAIT",
    "EMERGENCY_TRAITS",
    "Activation",
    "BreakGlass",
    "DELEGATION_HEADER",
    "DELEGATION_TYPE",
    "MFA_TYPE",
    "ON_BEHALF_OF_HEADER",
    "ApiKeyRecord",
    "ApiKeyService",
    "ApiKeys",
    "AuthService",
    "Claims",
    "Delegations",
    "Delegator",
    "Identity",
    "IdentityConfig",
    "KeyUse",
    "Lockout",
    "PasswordHasher",
    "PasswordParams",
    "PublishEvent",
    "Sessions",
    "SigningKey",
    "TokenError",
    "TokenKeyInsecure",
    "TokenSigner",
    "Tokens",
    "UserAdmin",
    "UserAdminService",
    "UserEvents",
    "UserRecord",
    "UserSession",
    "UserStore",
    "api_keys_table",
    "build_identity",
    "check_new_password",
    "hash_params",
    "hotp",
    "key_from_secret",
    "load_or_create_key",
    "match_step",
    "mfa_backup_codes_table",
    "provisioning_uri",
    "refresh_tokens_table",
    "token_key_path",
    "totp",
    "user_admin",
    "user_sessions_table",
    "users_table",
]
