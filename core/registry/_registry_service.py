"""PluginRegistryService: Register (bootstrap port), RenewCertificate,
Heartbeat, Deregister and Resume (mTLS port).

Resume is Register's counterpart for a restarted process that kept its key
and certificate: the certificate authenticates it (the chain has already
refused a revoked serial and a plugin that is not active), so no join token
is needed; what Register would check of the request is checked again here
(the manifest is the approved one, the endpoint is valid for this plugin),
and what Register starts starts again: health from UNKNOWN, then Init, so
nothing is routed to the new process before its Init succeeded."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import pathlib
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.core.ca import CertificateAuthority
from vivified.core.chain import Authenticator, StreamTracker, annotate
from vivified.core.errors import InvalidArgument, PermissionDenied, Unauthenticated
from vivified.core.manifest import (
    manifest_sha256,
    reject_unknown_fields,
    validate_manifest,
)
from vivified.core.plugin_sockets import UNIX, plugin_socket, unix_target
from vivified.core.registry._monitor import HealthMonitor
from vivified.core.registry._store import ACTIVE, APPROVED, DISABLED, REVOKED, PluginRecord, PluginStore
from vivified.core.traits import TraitCatalogue
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc

_DOMAIN = "vivified.registry"
_MAX_TOKEN = 256


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _timestamp(epoch: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromSeconds(int(epoch))
    return ts


def validate_endpoint(endpoint: str, plugin_id: str, socket_dir: pathlib.Path | None) -> str:
    """`host:port` with an IP literal or DNS name host and a port in 1..65535,
    or, when the core serves sandboxed plugins (`socket_dir`), exactly
    `unix:<socket_dir>/<plugin_id>/plugin.sock`: no other socket path, so a
    plugin cannot send the core's dials to another socket on the host."""
    if endpoint.startswith(UNIX):
        if socket_dir is None or endpoint != unix_target(plugin_socket(socket_dir, plugin_id)):
            expected = (
                f"unix:{plugin_socket(socket_dir, plugin_id)}"
                if socket_dir is not None
                else "host:port (this core serves no plugin sockets)"
            )
            raise InvalidArgument(
                f"a Unix endpoint must be the plugin's own socket {expected}, got {endpoint[:120]!r}",
                reason="INVALID_REQUEST",
                domain=_DOMAIN,
            )
        return endpoint
    host, sep, port = endpoint.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    valid_host = False
    try:
        ipaddress.ip_address(host)
        valid_host = True
    except ValueError:
        labels = host.split(".")
        valid_host = (
            bool(host)
            and len(host) <= 253
            and all(0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() for label in labels)
        )
    if not sep or not valid_host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(
            f"endpoint must be host:port with a port in 1-65535, got {endpoint[:80]!r}",
            reason="INVALID_REQUEST",
            domain=_DOMAIN,
        )
    return endpoint


class RegistryService(registry_pb2_grpc.PluginRegistryServiceServicer):
    """Admits plugins and keeps their identity fresh.

    `heartbeat_interval` and `leaf_ttl` return the core's current settings: a
    certificate issued or renewed gets the leaf TTL in force then, and every
    Register and Heartbeat reply tells the plugin the interval in force then
    (the SDK adopts it from each reply, so a registered plugin switches at its
    next heartbeat). `core_endpoint` returns the core's bound mTLS address,
    sent in every RegisterResponse. `socket_dir` is the core's
    `plugin_socket_dir` (see `validate_endpoint`)."""

    def __init__(
        self,
        *,
        store: PluginStore,
        ca: CertificateAuthority,
        catalogue: TraitCatalogue,
        authenticator: Authenticator,
        monitor: HealthMonitor,
        streams: StreamTracker,
        heartbeat_interval: Callable[[], float],
        leaf_ttl: Callable[[], dt.timedelta],
        on_revoked: Callable[[str], Any],
        on_resumed: Callable[[str], Any],
        core_endpoint: Callable[[], str],
        socket_dir: pathlib.Path | None = None,
    ) -> None:
        self._socket_dir = socket_dir.resolve() if socket_dir is not None else None
        self._store = store
        self._ca = ca
        self._catalogue = catalogue
        self._authn = authenticator
        self._monitor = monitor
        self._streams = streams
        self._heartbeat_interval = heartbeat_interval
        self._leaf_ttl = leaf_ttl
        self._on_revoked = on_revoked
        self._on_resumed = on_resumed
        self._core_endpoint = core_endpoint

    def _interval(self) -> int:
        return int(max(1, round(self._heartbeat_interval())))

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.RegisterResponse:
        if not request.HasField("manifest"):
            raise InvalidArgument("manifest is required", reason="MANIFEST_INVALID", domain=_DOMAIN)
        if not request.csr_pem:
            raise InvalidArgument("csr_pem is required", reason="CSR_INVALID", domain=_DOMAIN)
        if not request.join_token or len(request.join_token) > _MAX_TOKEN:
            raise InvalidArgument("join_token is required", reason="INVALID_REQUEST", domain=_DOMAIN)
        manifest = request.manifest
        reject_unknown_fields(manifest)
        validate_manifest(manifest, self._catalogue)
        endpoint = validate_endpoint(request.endpoint, manifest.id, self._socket_dir)
        digest = manifest_sha256(manifest)
        token_hash = token_sha256(request.join_token)
        await asyncio.to_thread(self._store.check_join_token, manifest.id, token_hash)
        record = await self._store.fetch(manifest.id)  # approved through any replica
        if record is None or record.status != APPROVED or record.manifest_sha256 != digest:
            # A concurrent registration with this token may have won since the
            # check above (the plugin is then active, no longer approved): the
            # answer is then the consumed token's, the same for every loser.
            await asyncio.to_thread(self._store.check_join_token, manifest.id, token_hash)
            raise PermissionDenied(
                "this manifest is not the one the operator approved (sha256 differs); approve it again",
                reason="MANIFEST_NOT_APPROVED",
                domain=_DOMAIN,
                metadata={"manifest_sha256": digest},
            )
        ungranted = sorted(set(manifest.traits) - record.granted_traits)
        if ungranted:
            raise PermissionDenied(
                f"traits not granted by the operator: {', '.join(ungranted)}",
                reason="TRAIT_NOT_GRANTED",
                domain=_DOMAIN,
            )
        issued = self._ca.issue_plugin_certificate(manifest.id, request.csr_pem.encode(), lifetime=self._leaf_ttl())
        not_after = int(issued.not_after.timestamp())
        await self._monitor.registering(manifest.id)
        record = await self._store.register(manifest.id, token_hash, digest, endpoint, issued.serial, not_after)
        self._monitor.registered(record)
        return registry_pb2.RegisterResponse(
            certificate_chain_pem=issued.chain_pem.decode(),
            ca_certificate_pem=self._ca.root_pem.decode(),
            spiffe_id=f"spiffe://{self._ca.trust_domain}/plugin/{manifest.id}",
            expire_time=_timestamp(not_after),
            heartbeat_interval_seconds=self._interval(),
            core_endpoint=self._core_endpoint(),
        )

    async def RenewCertificate(
        self, request: registry_pb2.RenewCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.RenewCertificateResponse:
        plugin_id = self._authn.principal(context).id
        issued = self._ca.issue_plugin_certificate(plugin_id, request.csr_pem.encode(), lifetime=self._leaf_ttl())
        not_after = int(issued.not_after.timestamp())
        await self._store.record_certificate(f"plugin/{plugin_id}", issued.serial, not_after)
        return registry_pb2.RenewCertificateResponse(
            certificate_chain_pem=issued.chain_pem.decode(),
            expire_time=_timestamp(not_after),
            ca_bundle_pem=self._ca.trust_bundle_pem.decode(),
        )

    async def Heartbeat(
        self, request: registry_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.HeartbeatResponse:
        await self._monitor.heartbeat(self._authn.principal(context).id)
        return registry_pb2.HeartbeatResponse(heartbeat_interval_seconds=self._interval())

    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.DeregisterResponse:
        plugin_id = self._authn.principal(context).id
        await self._store.set_status(plugin_id, REVOKED)
        self._streams.close_all(plugin_id)
        await self._on_revoked(plugin_id)
        return registry_pb2.DeregisterResponse()

    async def Resume(
        self, request: registry_pb2.ResumeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.ResumeResponse:
        principal = self._authn.principal(context)
        plugin_id = principal.id
        if not request.HasField("manifest"):
            raise InvalidArgument("manifest is required", reason="MANIFEST_INVALID", domain=_DOMAIN)
        manifest = request.manifest
        reject_unknown_fields(manifest)
        validate_manifest(manifest, self._catalogue)
        if manifest.id != plugin_id:
            raise PermissionDenied(
                f"the manifest names plugin {manifest.id[:80]!r} but the certificate is plugin {plugin_id!r}'s",
                reason="MANIFEST_NOT_APPROVED",
                domain=_DOMAIN,
            )
        endpoint = validate_endpoint(request.endpoint, plugin_id, self._socket_dir)
        annotate(endpoint=endpoint)
        digest = manifest_sha256(manifest)
        # The database's view now, not the last sync's: a revocation committed
        # through another replica must not be resumed past.
        record = await self._store.fetch(plugin_id)
        if principal.cert_serial is None or self._store.is_revoked_serial(principal.cert_serial):
            raise Unauthenticated(
                "this certificate was revoked or superseded", reason="CERTIFICATE_REVOKED", domain="vivified.auth"
            )
        self._refuse_unless_active(plugin_id, record)
        if record is None or record.manifest_sha256 != digest:
            raise PermissionDenied(
                "this manifest is not the one the operator approved (sha256 differs); approve it again",
                reason="MANIFEST_NOT_APPROVED",
                domain=_DOMAIN,
                metadata={"manifest_sha256": digest},
            )
        await self._monitor.registering(plugin_id)
        resumed = await self._store.resume(plugin_id, digest, endpoint)
        if resumed is None:  # revoked, disabled or approved again since the read above
            self._refuse_unless_active(plugin_id, self._store.get(plugin_id))
            raise PermissionDenied(
                "the approval changed while resuming; approve the plugin again",
                reason="MANIFEST_NOT_APPROVED",
                domain=_DOMAIN,
            )
        # The previous process's channel may be backing off from its address: dial afresh.
        await self._on_resumed(plugin_id)
        self._monitor.registered(resumed)
        not_after = self._authn.not_after(context)
        return registry_pb2.ResumeResponse(
            expire_time=_timestamp(not_after.timestamp() if not_after else 0),
            heartbeat_interval_seconds=self._interval(),
            core_endpoint=self._core_endpoint(),
            ca_bundle_pem=self._ca.trust_bundle_pem.decode(),
        )

    @staticmethod
    def _refuse_unless_active(plugin_id: str, record: PluginRecord | None) -> None:
        if record is not None and record.status == ACTIVE:
            return
        status = str(record.status) if record is not None else "unknown"
        reasons: dict[str, str] = {REVOKED: "PLUGIN_REVOKED", DISABLED: "PLUGIN_DISABLED"}
        reason = reasons.get(status, "PLUGIN_UNKNOWN")
        raise PermissionDenied(
            f"plugin {plugin_id!r} is {status}: only an active registration can be resumed",
            reason=reason,
            domain=_DOMAIN,
        )
