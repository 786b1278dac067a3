"""PluginAdminService: operators approve, list, enable, disable and revoke plugins."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.admin.v1 import plugin_admin_pb2 as pb
from vivified.admin.v1 import plugin_admin_pb2_grpc
from vivified.core.chain import StreamTracker, annotate
from vivified.core.clock import Clock
from vivified.core.errors import FailedPrecondition, InvalidArgument
from vivified.core.manifest import (
    manifest_sha256,
    reject_unknown_fields,
    validate_manifest,
)
from vivified.core.registry._registry_service import token_sha256
from vivified.core.registry._store import (
    ACTIVE,
    APPROVED,
    DISABLED,
    HEALTHY,
    INIT_FAILED,
    REVOKED,
    UNHEALTHY,
    CertificateRecord,
    PluginRecord,
    PluginStore,
)
from vivified.core.traits import TraitCatalogue
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL, SEVERITY_WARNING, SecurityAlert

_DOMAIN = "vivified.admin"
_MAX_TOKEN_TTL = 24 * 3600
_OPERATOR = "operator/"
_SHA256 = re.compile(r"[0-9a-f]{64}")
FAILURE_KINDS = {
    # kind reported by a supervisor -> (SecurityAlert kind, severity)
    "PLUGIN_CRASH_LOOP": ("plugin_crash_loop", SEVERITY_WARNING),
    "PLUGIN_ARTIFACT_MISMATCH": ("plugin_artifact_mismatch", SEVERITY_CRITICAL),
}
"""Failures `ReportPluginFailure` accepts."""
_STATUS = {
    APPROVED: pb.PLUGIN_STATUS_APPROVED,
    ACTIVE: pb.PLUGIN_STATUS_ACTIVE,
    DISABLED: pb.PLUGIN_STATUS_DISABLED,
    REVOKED: pb.PLUGIN_STATUS_REVOKED,
}
_HEALTH = {
    HEALTHY: pb.PLUGIN_HEALTH_HEALTHY,
    UNHEALTHY: pb.PLUGIN_HEALTH_UNHEALTHY,
    INIT_FAILED: pb.PLUGIN_HEALTH_UNHEALTHY,
}


def plugin_message(record: PluginRecord) -> pb.Plugin:
    # A revoked plugin is observed no more: whatever health it last had is not shown as current.
    observed = record.status != REVOKED
    message = pb.Plugin(
        plugin_id=record.plugin_id,
        status=_STATUS[record.status],
        health=_HEALTH.get(record.health, pb.PLUGIN_HEALTH_UNSPECIFIED) if observed else pb.PLUGIN_HEALTH_UNSPECIFIED,
        granted_traits=sorted(record.granted_traits),
        manifest_sha256=record.manifest_sha256,
        endpoint=record.endpoint,
        version=record.version,
        artifact_sha256=record.artifact_sha256,
    )
    if record.last_heartbeat_epoch is not None:
        message.last_heartbeat_time.FromNanoseconds(int(record.last_heartbeat_epoch * 1e9))
    return message


def _require_id(plugin_id: str) -> str:
    if not plugin_id:
        raise InvalidArgument("plugin_id is required", reason="INVALID_REQUEST", domain=_DOMAIN)
    return plugin_id


class AdminService(plugin_admin_pb2_grpc.PluginAdminServiceServicer):
    """Operator-facing plugin governance. Every call is audited by the chain."""

    def __init__(
        self,
        *,
        store: PluginStore,
        catalogue: TraitCatalogue,
        streams: StreamTracker,
        clock: Clock,
        token_ttl_seconds: int,
        on_revoked: Callable[[str], Awaitable[None]],
        on_alert: Callable[[SecurityAlert], Awaitable[None]],
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._streams = streams
        self._clock = clock
        self._token_ttl = token_ttl_seconds
        self._on_revoked = on_revoked
        self._on_alert = on_alert
        self._operators = OperatorCertificates(store)

    async def ApprovePlugin(
        self, request: pb.ApprovePluginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ApprovePluginResponse:
        if not request.HasField("manifest"):
            raise InvalidArgument("manifest is required", reason="MANIFEST_INVALID", domain=_DOMAIN)
        manifest = request.manifest
        reject_unknown_fields(manifest)
        validate_manifest(manifest, self._catalogue)
        granted = frozenset(request.granted_traits or manifest.traits)
        extra = sorted(granted - set(manifest.traits))
        if extra:
            raise InvalidArgument(
                f"cannot grant traits the manifest does not request: {', '.join(extra)}",
                reason="INVALID_REQUEST",
                domain=_DOMAIN,
            )
        if request.artifact_sha256 and not _SHA256.fullmatch(request.artifact_sha256):
            raise InvalidArgument(
                "artifact_sha256 must be 64 lowercase hexadecimal digits", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        ttl = request.token_ttl_seconds or self._token_ttl
        if not 0 < ttl <= _MAX_TOKEN_TTL:
            raise InvalidArgument(
                f"token_ttl_seconds must be between 1 and {_MAX_TOKEN_TTL}", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        token = "vjt_" + secrets.token_urlsafe(32)
        expires = int(self._clock.now().timestamp()) + ttl
        digest = manifest_sha256(manifest)
        previous = await self._store.fetch(manifest.id)
        await self._store.approve(
            manifest,
            digest,
            granted,
            token_sha256(token),
            expires,
            replace_existing=request.replace,
            artifact_sha256=request.artifact_sha256,
        )
        if previous is not None and previous.status in (ACTIVE, DISABLED):
            self._streams.close_all(manifest.id)
        response = pb.ApprovePluginResponse(join_token=token, manifest_sha256=digest, granted_traits=sorted(granted))
        response.token_expire_time.CopyFrom(timestamp_pb2.Timestamp(seconds=expires))
        return response

    async def ListPlugins(
        self, request: pb.ListPluginsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPluginsResponse:
        return pb.ListPluginsResponse(plugins=[plugin_message(r) for r in self._store.all()])

    async def EnablePlugin(
        self, request: pb.EnablePluginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EnablePluginResponse:
        record = await self._store.fetch_required(_require_id(request.plugin_id))
        if record.status == APPROVED:
            raise FailedPrecondition(
                f"plugin {record.plugin_id!r} has not registered yet", reason="PLUGIN_STATE", domain=_DOMAIN
            )
        if record.status != ACTIVE:
            record = await self._store.set_status(record.plugin_id, ACTIVE)
        return pb.EnablePluginResponse(plugin=plugin_message(record))

    async def DisablePlugin(
        self, request: pb.DisablePluginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DisablePluginResponse:
        record = await self._store.fetch_required(_require_id(request.plugin_id))
        if record.status == REVOKED:
            raise FailedPrecondition(f"plugin {record.plugin_id!r} is revoked", reason="PLUGIN_STATE", domain=_DOMAIN)
        if record.status != DISABLED:
            record = await self._store.set_status(record.plugin_id, DISABLED)
        self._streams.close_all(record.plugin_id, "PLUGIN_DISABLED")
        return pb.DisablePluginResponse(plugin=plugin_message(record))

    async def RevokePlugin(
        self, request: pb.RevokePluginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RevokePluginResponse:
        record = await self._store.fetch_required(_require_id(request.plugin_id))
        if record.status != REVOKED:
            record = await self._store.set_status(record.plugin_id, REVOKED)
        self._streams.close_all(record.plugin_id)
        await self._on_revoked(record.plugin_id)
        return pb.RevokePluginResponse(plugin=plugin_message(record))

    async def ReportPluginFailure(
        self, request: pb.ReportPluginFailureRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportPluginFailureResponse:
        record = await self._store.fetch_required(_require_id(request.plugin_id))
        if request.kind not in FAILURE_KINDS:
            raise InvalidArgument(
                f"kind must be one of {', '.join(sorted(FAILURE_KINDS))}", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        alert_kind, severity = FAILURE_KINDS[request.kind]
        details = {k[:64]: v[:512] for k, v in sorted(request.details.items())[:32]}
        alert = SecurityAlert(
            alert_id=uuid.uuid4().hex,
            kind=alert_kind,
            severity=severity,
            summary=request.summary[:1000] or f"plugin {record.plugin_id} stopped: {request.kind}",
            subject=f"plugin/{record.plugin_id}",
            details=details,
        )
        # The chain's one audit record of this call carries the report.
        annotate(failure=request.kind, alert_id=alert.alert_id, **details)
        if record.status not in (REVOKED, APPROVED):
            await self._store.set_health(record.plugin_id, UNHEALTHY)
            record = await self._store.fetch_required(record.plugin_id)
        await self._on_alert(alert)
        return pb.ReportPluginFailureResponse(plugin=plugin_message(record), alert_id=alert.alert_id)

    async def ListOperatorCertificates(
        self, request: pb.ListOperatorCertificatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListOperatorCertificatesResponse:
        return await self._operators.list()

    async def RevokeOperatorCertificate(
        self, request: pb.RevokeOperatorCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RevokeOperatorCertificateResponse:
        return await self._operators.revoke(request)


def _operator_message(cert: CertificateRecord) -> pb.OperatorCertificate:
    message = pb.OperatorCertificate(serial=format(cert.serial, "x"), name=cert.subject.removeprefix("operator/"))
    message.expire_time.FromSeconds(cert.not_after)
    if cert.issued_at is not None:
        message.issue_time.FromSeconds(cert.issued_at)
    if cert.revoked_at is not None:
        message.revoke_time.FromSeconds(cert.revoked_at)
    return message


class OperatorCertificates:
    """ListOperatorCertificates and RevokeOperatorCertificate, on the admin service."""

    def __init__(self, store: PluginStore) -> None:
        self._store = store

    async def list(self) -> pb.ListOperatorCertificatesResponse:
        certificates = await self._store.certificates(_OPERATOR)
        return pb.ListOperatorCertificatesResponse(certificates=[_operator_message(c) for c in certificates])

    async def revoke(self, request: pb.RevokeOperatorCertificateRequest) -> pb.RevokeOperatorCertificateResponse:
        text = request.serial.strip().lower().removeprefix("0x")
        if not text or len(text) > 40 or any(c not in "0123456789abcdef" for c in text):
            raise InvalidArgument(
                "serial must be a hexadecimal certificate serial", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        revoked = await self._store.revoke_certificate(int(text, 16), _OPERATOR)
        return pb.RevokeOperatorCertificateResponse(certificate=_operator_message(revoked))
