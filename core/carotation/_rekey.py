"""Applying a trust change to the running core: its listeners (`CoreTLS`),
its calls to plugins (`PluginConnector`) and, after the issuing switch, a
core certificate from the new issuing CA and a new local operator identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives import serialization

from vivified.core.ca import CertificateAuthority, CoreTLS, new_private_key
from vivified.core.carotation._driver import TrustChange
from vivified.core.registry import CoreIdentity, PluginConnector


class CoreRekeyer:
    """`on_trust_change` for `CARotationDriver`."""

    def __init__(
        self,
        ca: CertificateAuthority,
        tls: CoreTLS,
        connector: PluginConnector,
        identity: CoreIdentity,
        operator: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._ca = ca
        self._tls = tls
        self._connector = connector
        self._identity = identity
        self._operator = operator

    async def __call__(self, change: TrustChange) -> None:
        chain_pem, key_pem = self._identity.chain_pem, self._identity.key_pem
        if change.switched:
            key = new_private_key()
            chain_pem = self._ca.issue_core_certificate(key).chain_pem
            key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        self._identity = CoreIdentity(change.bundle_pem, chain_pem, key_pem, self._identity.trust_domain)
        self._tls.install(key_pem, chain_pem, change.bundle_pem)
        self._connector.use_identity(self._identity)
        # The local operator's ca.crt gets the bundle; after the switch, a
        # certificate of the new chain too (`operator(True)`).
        await self._operator(change.switched)
