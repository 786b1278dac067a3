"""Authentication: the principal comes from the verified TLS peer certificate.

Only a peer without a client certificate (the bootstrap port) may present a
user's credential metadata — `authorization: Bearer <access token>` or
`x-api-key: <key>` — which the identity service's hook verifies. When a
certificate is present, metadata is never consulted: a header cannot
override a verified certificate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from vivified.core.ca import PeerCertificateParser
from vivified.core.chain._call import Call, Principal, Proceed
from vivified.core.chain._outcome import Denied
from vivified.core.errors import Unauthenticated
from vivified.core.kinds import PrincipalKind

_DOMAIN = "vivified.auth"


class Authenticator:
    """Derives the Principal of a call from its TLS auth context."""

    def __init__(self, parser: PeerCertificateParser, is_revoked_serial: Callable[[int], bool]) -> None:
        self._parser = parser
        self._is_revoked = is_revoked_serial

    def principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """The verified peer's identity; raises Unauthenticated for a
        certificate that is not a Vivified identity. A peer without a client
        certificate (possible only on the bootstrap port) is anonymous.
        Revocation is checked separately by `revoked`."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            # context.peer() is e.g. "ipv4:127.0.0.1:54321" or "ipv6:[::1]:54321".
            _, _, address = (context.peer() or "").partition(":")
            return Principal(kind=PrincipalKind.ANONYMOUS, id=address.rpartition(":")[0] or "unknown")
        peer_cert = self._parser.parse(next(iter(pems)))  # typed as an Iterable, not a list
        name = peer_cert.identity.name or peer_cert.identity.kind.value
        return Principal(kind=peer_cert.identity.kind, id=name, cert_serial=peer_cert.serial)

    def not_after(self, context: grpc.aio.ServicerContext[Any, Any]) -> dt.datetime | None:
        """When the verified peer's certificate expires (None without one)."""
        pems = context.auth_context().get("x509_pem_cert")
        return self._parser.parse(next(iter(pems))).not_after if pems else None

    def revoked(self, principal: Principal) -> bool:
        return principal.cert_serial is not None and self._is_revoked(principal.cert_serial)


CredentialCheck = Callable[[Mapping[str, str]], Awaitable[Principal]]
"""Verifies a call's credential metadata into a `user` Principal, or raises Unauthenticated."""

USER_CREDENTIAL_HEADERS = ("authorization", "x-api-key")


class AuthenticationLayer:
    """Sets `call.principal` (and a user's traits), or denies with UNAUTHENTICATED."""

    def __init__(self, authenticator: Authenticator, credentials: CredentialCheck | None = None) -> None:
        self._authenticator = authenticator
        self._credentials = credentials

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        try:
            call.principal = self._authenticator.principal(call.context)
            anonymous = call.principal.kind == PrincipalKind.ANONYMOUS
            if anonymous and any(h in call.metadata for h in USER_CREDENTIAL_HEADERS):
                if self._credentials is None:
                    raise Unauthenticated(
                        "this core does not accept user credentials", reason="IDENTITY_INVALID", domain=_DOMAIN
                    )
                call.principal = await self._credentials(call.metadata)
                call.traits = call.principal.traits
        except Unauthenticated as exc:
            raise Denied(exc.code, exc.message, reason=exc.reason, rule_id="authentication", domain=exc.domain) from exc
        if self._authenticator.revoked(call.principal):
            raise Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                "this certificate was revoked or superseded",
                reason="CERTIFICATE_REVOKED",
                rule_id="authentication",
                domain=_DOMAIN,
            )
        await proceed(call)
