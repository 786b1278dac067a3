"""The real interceptor chain around chosen servicers, on an in-process
grpc.aio server with real mTLS: the seam tests and benchmarks use instead of
wiring the chain themselves.

`chain_deps` gives the chain's dependencies for a CA, an audit log and a rule
index, with the core's method table and the `ChainDeps` defaults (override
any of them by keyword); `serve` builds the chain from them exactly as the
core does (`build_chain`), adds the servicers, and listens on
127.0.0.1:<free port> with a core certificate from the CA, requiring client
certificates like the core's mTLS port."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from vivified.core.audit import AuditLog
from vivified.core.ca import CertificateAuthority, PeerCertificateParser, new_private_key
from vivified.core.chain import AuditRecorder, AuditSink, Authenticator, ChainDeps, ChainInterceptor, build_chain
from vivified.core.policy import RuleIndex
from vivified.core.services import METHODS

Servicer = tuple[Any, Callable[[Any, grpc.aio.Server], None]]
"""A servicer and the generated function that adds it to a server."""


def chain_deps(
    ca: CertificateAuthority, audit: AuditLog | AuditSink, index: RuleIndex | Callable[[], RuleIndex], **overrides: Any
) -> ChainDeps:
    """The chain's dependencies for tests and benchmarks: certificates of `ca`
    (none revoked), records into `audit`, decisions by `index` (a RuleIndex or
    a getter read at every call), the core's per-method facts, and the
    `ChainDeps` defaults for the rest unless `overrides` names them."""
    values: dict[str, Any] = {
        "audit": AuditRecorder(audit),
        "authenticator": Authenticator(PeerCertificateParser(ca.trust_domain), lambda serial: False),
        "policy_index": index if callable(index) else (lambda: index),
        "methods": METHODS,
    }
    values.update(overrides)
    return ChainDeps(**values)


@dataclass
class ServedChain:
    """A running server: its address, the chain and what it was built from."""

    address: str
    deps: ChainDeps
    chain: ChainInterceptor
    server: grpc.aio.Server

    async def stop(self) -> None:
        await self.server.stop(0)


async def serve(
    ca: CertificateAuthority,
    deps: ChainDeps,
    servicers: Sequence[Servicer],
    *,
    generic_handlers: Sequence[grpc.GenericRpcHandler] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> ServedChain:
    """Start a server running `servicers` behind the chain built from `deps`."""
    chain = build_chain(deps)
    server = grpc.aio.server(interceptors=[chain], options=list(options))
    for servicer, add in servicers:
        add(servicer, server)
    if generic_handlers:
        server.add_generic_rpc_handlers(list(generic_handlers))
    key = new_private_key()
    issued = ca.issue_core_certificate(key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    credentials = grpc.ssl_server_credentials([(key_pem, issued.chain_pem)], ca.root_pem, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return ServedChain(f"127.0.0.1:{port}", deps, chain, server)
