"""Delegation tokens: a user's identity carried through plugins (no confused deputy).

When a user calls plugin X through the core, the core forwards the call with
`x-vivified-delegation: <JWT>` — typ `vivified-delegation+jwt`, `aud`
`plugin:X`, `sub` the user id, the user's `traits`, the session (`sid`) or API
key (`akid`) it came from, and a short `exp` (60 s by default). When X calls
plugin Y through the core and passes that value on, the core verifies it
(signed with the core's token key, algorithm fixed by the key, audience must
be the calling plugin, not expired, the session or key still live), and the
call must then be allowed for X (its manifest) and for the user (the rules for
user principals on the operation). Y receives a fresh token with `aud`
`plugin:Y`. A token is opaque to plugins: only the core can verify it, and a
token handed to another plugin is refused there (wrong audience).
"""

from __future__ import annotations

from dataclasses import dataclass

from vivified.core.chain import Principal
from vivified.core.errors import Unauthenticated
from vivified.core.identity._api_keys import ApiKeys
from vivified.core.identity._sessions import Sessions
from vivified.core.identity._tokens import DELEGATION_TYPE, TokenError, TokenSigner

DELEGATION_HEADER = "x-vivified-delegation"
"""Metadata carrying a delegation token to a plugin, and back to the core."""
ON_BEHALF_OF_HEADER = "x-vivified-on-behalf-of"
"""Metadata naming the user a forwarded call is made for (informational: only
the core can call a plugin, so the plugin may trust it)."""
_DOMAIN = "vivified.identity"
# The deciding "rule" of a refused token, for ErrorInfo and the audit record.
_RULE = {"rule_id": "delegation-token"}


@dataclass(frozen=True)
class Delegator:
    """The user a plugin acts for, and where their sign-in came from."""

    user_id: str
    traits: frozenset[str]
    session_id: str = ""
    api_key_id: str = ""


def _invalid(message: str) -> Unauthenticated:
    return Unauthenticated(message, reason="DELEGATION_INVALID", domain=_DOMAIN, metadata=_RULE)


class Delegations:
    """Issues and verifies delegation tokens."""

    def __init__(self, signer: TokenSigner, sessions: Sessions, keys: ApiKeys, *, ttl_seconds: int) -> None:
        self._signer = signer
        self._sessions = sessions
        self._keys = keys
        self._ttl = ttl_seconds

    @staticmethod
    def of_user(principal: Principal) -> Delegator:
        """The delegator behind a `user` principal of the chain."""
        return Delegator(principal.id, principal.traits, principal.session_id or "", principal.api_key_id or "")

    def issue(self, delegator: Delegator, plugin_id: str) -> str:
        """A token only `plugin_id` can present back to the core."""
        origin = {"sid": delegator.session_id} if delegator.session_id else {"akid": delegator.api_key_id}
        token, _ = self._signer.issue(
            DELEGATION_TYPE,
            delegator.user_id,
            self._ttl,
            audience=f"plugin:{plugin_id}",
            traits=sorted(delegator.traits),
            **origin,
        )
        return token

    async def verify(self, token: str, plugin_id: str) -> Delegator:
        """The user `plugin_id` acts for; Unauthenticated with DELEGATION_INVALID
        (forged, malformed, another plugin's), DELEGATION_EXPIRED or
        DELEGATION_REVOKED (the user's session or key has ended)."""
        try:
            claims = self._signer.verify(token, DELEGATION_TYPE, audience=f"plugin:{plugin_id}")
        except TokenError as exc:
            if exc.reason == "TOKEN_EXPIRED":
                raise Unauthenticated(
                    "the delegation token has expired; the user must call again",
                    reason="DELEGATION_EXPIRED",
                    domain=_DOMAIN,
                    metadata=_RULE,
                ) from None
            raise _invalid(f"the delegation token is not valid for this plugin: {exc.message}") from None
        traits, sid, akid = (claims.extra.get(name) for name in ("traits", "sid", "akid"))
        if not isinstance(traits, list) or not all(isinstance(t, str) for t in traits):
            raise _invalid("the delegation token carries no traits")
        if not ((isinstance(sid, str) and sid) or (isinstance(akid, str) and akid)):
            raise _invalid("the delegation token names no session or API key")
        try:
            if isinstance(sid, str) and sid:
                live = await self._sessions.traits_of_live(sid, claims.subject)
            else:
                live = await self._keys.traits_of_live(str(akid), claims.subject)
        except Unauthenticated:
            raise Unauthenticated(
                "the user's session or API key behind this delegation has ended",
                reason="DELEGATION_REVOKED",
                domain=_DOMAIN,
                metadata=_RULE,
            ) from None
        # Traits can only shrink after issue (a role change ends the session).
        return Delegator(
            claims.subject,
            frozenset(traits) & live,
            sid if isinstance(sid, str) else "",
            akid if isinstance(akid, str) else "",
        )
