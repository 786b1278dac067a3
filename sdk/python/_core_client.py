"""Calls from the plugin to the core's `PluginRegistryService`, with typed errors.

`Register` goes to the bootstrap port over server-authenticated TLS; the other
calls (`Resume` after a restart among them) go over the mTLS channel, which is replaced (not mutated) when the
certificate is renewed: calls already running on the old channel finish
there, new calls use the new certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence

import grpc

from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc
from vivified.sdk._errors import (
    SDK_DOMAIN,
    CoreUntrustedError,
    UnauthenticatedError,
    VivifiedSDKError,
    from_rpc_error,
)
from vivified.sdk._identity import (
    IssuedCertificate,
    KeyAndCsr,
    accept_issued,
    new_key_and_csr,
)
from vivified.sdk._settings import PluginSettings
from vivified.sdk._stored_identity import StoredIdentity
from vivified.sdk._transport import bootstrap_channel, core_certificate_problem, core_name, mtls_channel

_log = logging.getLogger("vivified.sdk")


def _untrusted(settings: PluginSettings, address: str, detail: str | None) -> CoreUntrustedError:
    return CoreUntrustedError(
        f"could not reach a trusted core at {address}: {detail}. The core must present a certificate "
        f"chaining to {settings.ca_file} with the name {core_name(settings.trust_domain)}; check "
        "VIVIFIED_BOOTSTRAP_ADDRESS / VIVIFIED_CORE_ADDRESS, VIVIFIED_CA_FILE and VIVIFIED_TRUST_DOMAIN."
    )


class CoreClient:
    """The plugin's side of the registry protocol."""

    def __init__(
        self,
        settings: PluginSettings,
        root_pem: bytes,
        manifest: PluginManifest,
        clock: Callable[[], dt.datetime],
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self._settings = settings
        self._interceptors = tuple(interceptors)
        self._clock = clock
        self._root = root_pem
        self._manifest = manifest
        self._channel: grpc.aio.Channel | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.spiffe_id = f"spiffe://{settings.trust_domain}/plugin/{manifest.id}"

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise VivifiedSDKError("the plugin is not connected to the core", reason="NOT_CONNECTED", domain=SDK_DOMAIN)
        return self._channel

    async def register(self, endpoint: str) -> tuple[IssuedCertificate, registry_pb2.RegisterResponse]:
        """Exchange the manifest, a CSR and the join token for a certificate.

        Not retried: the join token works once, and a core that fails TLS
        verification must not be offered it again."""
        requested = new_key_and_csr(self._manifest.id)
        request = registry_pb2.RegisterRequest(
            manifest=self._manifest,
            csr_pem=requested.csr_pem.decode(),
            join_token=self._settings.join_token,
            endpoint=endpoint,
        )
        address = self._settings.bootstrap_address
        problem = await core_certificate_problem(
            address, self._root, self._settings.trust_domain, self._settings.connect_timeout_seconds
        )
        if problem is not None:
            raise _untrusted(self._settings, address, problem)
        async with bootstrap_channel(address, self._root, self._settings.trust_domain) as channel:
            try:
                reply = await registry_pb2_grpc.PluginRegistryServiceStub(channel).Register(
                    request, timeout=self._settings.connect_timeout_seconds
                )
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
                # UNAVAILABLE without an ErrorInfo is the transport failing: nothing
                # answered, or the handshake did not verify. With one, the verified
                # core itself answered (e.g. its database is down).
                if err.code() == grpc.StatusCode.UNAVAILABLE and not error.reason:
                    raise _untrusted(self._settings, address, err.details()) from None
                raise error from None
        if reply.spiffe_id != self.spiffe_id:
            raise VivifiedSDKError(
                f"the core registered the plugin as {reply.spiffe_id!r}, expected {self.spiffe_id!r}",
                reason="ISSUED_CERTIFICATE_INVALID",
                domain=SDK_DOMAIN,
            )
        return accept_issued(reply.certificate_chain_pem, requested, self.spiffe_id, self._clock()), reply

    async def resume(self, endpoint: str, stored: StoredIdentity) -> registry_pb2.ResumeResponse:
        """Resume the registration `stored` belongs to, now serving at
        `endpoint`; on success the mTLS channel presents `stored.issued`.

        Raises the core's refusal as its typed error (e.g. UnauthenticatedError
        CERTIFICATE_REVOKED, PermissionDeniedError PLUGIN_REVOKED), an
        UnauthenticatedError CERTIFICATE_NOT_ACCEPTED when a verified core
        refused the certificate in the TLS handshake (expired, or from a root
        it no longer trusts), or CoreUntrustedError when no verified core answered."""
        previous_root, self._root = self._root, stored.roots_pem
        self.connect(stored.issued)
        request = registry_pb2.ResumeRequest(manifest=self._manifest, endpoint=endpoint)
        try:
            reply: registry_pb2.ResumeResponse = await registry_pb2_grpc.PluginRegistryServiceStub(self.channel).Resume(
                request, timeout=self._settings.connect_timeout_seconds
            )
        except grpc.aio.AioRpcError as err:
            await self.close()
            failed_root, self._root = self._root, previous_root
            error = from_rpc_error(err)
            if err.code() == grpc.StatusCode.UNAVAILABLE and not error.reason:
                address = self._settings.core_address
                problem = await core_certificate_problem(
                    address, failed_root, self._settings.trust_domain, self._settings.connect_timeout_seconds
                )
                if problem is not None:
                    raise _untrusted(self._settings, address, problem) from None
                raise UnauthenticatedError(
                    f"the core did not accept the stored certificate in the TLS handshake: {err.details()}",
                    reason="CERTIFICATE_NOT_ACCEPTED",
                    domain=SDK_DOMAIN,
                ) from None
            raise error from None
        if reply.ca_bundle_pem:
            self._root = reply.ca_bundle_pem.encode()
        return reply

    def connect(self, issued: IssuedCertificate) -> None:
        """Use `issued` for every call from now on; the previous channel closes
        once its in-flight calls finish (at most the shutdown grace)."""
        previous = self._channel
        self._channel = mtls_channel(
            self._settings.core_address, self._root, self._settings.trust_domain, issued, self._interceptors
        )
        if previous is not None:
            task = asyncio.create_task(previous.close(grace=self._settings.shutdown_grace_seconds))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def heartbeat(self) -> registry_pb2.HeartbeatResponse:
        stub = registry_pb2_grpc.PluginRegistryServiceStub(self.channel)
        try:
            return await stub.Heartbeat(registry_pb2.HeartbeatRequest(), timeout=self._settings.connect_timeout_seconds)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    async def renew(self) -> IssuedCertificate:
        """A new key and certificate; the caller decides when to start using them."""
        requested: KeyAndCsr = new_key_and_csr(self._manifest.id)
        stub = registry_pb2_grpc.PluginRegistryServiceStub(self.channel)
        try:
            reply = await stub.RenewCertificate(
                registry_pb2.RenewCertificateRequest(csr_pem=requested.csr_pem.decode()),
                timeout=self._settings.connect_timeout_seconds,
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        issued = accept_issued(reply.certificate_chain_pem, requested, self.spiffe_id, self._clock())
        if reply.ca_bundle_pem:
            # The roots the core trusts now (two during a CA rotation): used
            # from the next `connect` on, and by the plugin's own server.
            self._root = reply.ca_bundle_pem.encode()
        return issued

    @property
    def root_pem(self) -> bytes:
        """The trust anchors for the core: the CA file's, then the latest renewal's bundle."""
        return self._root

    async def deregister(self, reason: str) -> None:
        stub = registry_pb2_grpc.PluginRegistryServiceStub(self.channel)
        try:
            await stub.Deregister(
                registry_pb2.DeregisterRequest(reason=reason), timeout=self._settings.connect_timeout_seconds
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
