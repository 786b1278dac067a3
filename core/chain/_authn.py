"""Authentication: the principal comes from the verified TLS peer certificate
and nothing else. Request metadata is never consulted for identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from vivified.core.ca import PeerCertificateParser
from vivified.core.chain._call import Call, Principal, Proceed
from vivified.core.chain._deny import Denier
from vivified.core.errors import Unauthenticated

_DOMAIN = "vivified.auth"


class Authenticator:
    """Derives the Principal of a call from its TLS auth context."""

    def __init__(self, parser: PeerCertificateParser, is_revoked_serial: Callable[[int], bool]) -> None:
        self._parser = parser
        self._is_revoked = is_revoked_serial

    def principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """Raise Unauthenticated unless the peer is a known, unrevoked identity.
        A peer without a client certificate (bootstrap port) is anonymous."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            # context.peer() is e.g. "ipv4:127.0.0.1:54321" or "ipv6:[::1]:54321".
            _, _, address = (context.peer() or "").partition(":")
            return Principal(kind="anonymous", id=address.rpartition(":")[0] or "unknown")
        peer_cert = self._parser.parse(pems[0])
        if self._is_revoked(peer_cert.serial):
            raise Unauthenticated(
                "this certificate was revoked or superseded", reason="CERTIFICATE_REVOKED", domain=_DOMAIN
            )
        name = peer_cert.identity.name or peer_cert.identity.kind
        return Principal(kind=peer_cert.identity.kind, id=name, cert_serial=peer_cert.serial)


class AuthenticationLayer:
    """Sets `call.principal`, or denies with UNAUTHENTICATED."""

    def __init__(self, authenticator: Authenticator, denier: Denier) -> None:
        self._authenticator = authenticator
        self._denier = denier

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        try:
            call.principal = self._authenticator.principal(call.context)
        except Unauthenticated as exc:
            await self._denier.deny(
                call, exc.code, exc.message, reason=exc.reason, rule_id="authentication", domain=exc.domain
            )
            return
        await proceed(call)
