"""ApiKeyService: people create, list and revoke keys for their automation."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.core.chain import Principal, PrincipalKind, annotate, current_call
from vivified.core.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from vivified.core.identity._admin_service import USER_MANAGER
from vivified.core.identity._api_keys import ApiKeyRecord, ApiKeys
from vivified.identity.v1 import api_keys_pb2 as pb
from vivified.identity.v1 import api_keys_pb2_grpc

_DOMAIN = "vivified.identity"
DEFAULT_TTL = 90 * 24 * 3600
MAX_TTL = 365 * 24 * 3600


def key_message(record: ApiKeyRecord) -> pb.ApiKey:
    message = pb.ApiKey(
        key_id=record.key_id,
        owner_user_id=record.owner_user_id,
        name=record.name,
        scopes=list(record.scopes),
        create_time=timestamp_pb2.Timestamp(seconds=record.created_at),
        expire_time=timestamp_pb2.Timestamp(seconds=record.expires_at),
        revoked=record.revoked_at is not None,
    )
    if record.last_used_at is not None:
        message.last_used_time.FromSeconds(record.last_used_at)
    return message


def _signed_in() -> Principal:
    """The caller, who must hold a password session (an API key cannot manage keys)."""
    call = current_call()
    principal = call.principal if call is not None else None
    if principal is None or principal.kind != PrincipalKind.USER or principal.session_id is None:
        raise Unauthenticated(
            "sign in with a password session to manage API keys", reason="IDENTITY_MISSING", domain=_DOMAIN
        )
    return principal


def _key_not_found() -> NotFound:
    return NotFound("no such API key", reason="API_KEY_NOT_FOUND", domain=_DOMAIN)


class ApiKeyService(api_keys_pb2_grpc.ApiKeyServiceServicer):
    """See the proto: keys are scoped to the creator's own traits."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateApiKeyResponse:
        principal = _signed_in()
        name = request.name.strip()
        if not 1 <= len(name) <= 64 or not request.scopes:
            raise InvalidArgument(
                "name (1 to 64 characters) and scopes are required", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        ttl = request.ttl_seconds or DEFAULT_TTL
        if not 60 <= ttl <= MAX_TTL:
            raise InvalidArgument(f"ttl_seconds must be 60 to {MAX_TTL}", reason="INVALID_REQUEST", domain=_DOMAIN)
        scopes = tuple(sorted(set(request.scopes)))
        lacking = sorted(set(scopes) - principal.traits)
        if lacking:
            raise PermissionDenied(
                f"you do not hold trait(s) {', '.join(ascii(t)[:66] for t in lacking[:5])}",
                reason="SCOPE_NOT_HELD",
                domain=_DOMAIN,
            )
        secret, record = await self._keys.create(principal.id, name, scopes, ttl)
        annotate(resource=f"api_key/{record.key_id}", scopes=",".join(scopes))
        return pb.CreateApiKeyResponse(api_key=secret, key=key_message(record))

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListApiKeysResponse:
        principal = _signed_in()
        return pb.ListApiKeysResponse(keys=[key_message(r) for r in await self._keys.of_owner(principal.id)])

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RevokeApiKeyResponse:
        principal = _signed_in()
        if not request.key_id or len(request.key_id) > 32:
            raise InvalidArgument("key_id is required", reason="INVALID_REQUEST", domain=_DOMAIN)
        annotate(resource=f"api_key/{request.key_id}")
        record = await self._keys.get(request.key_id)
        if record is None or (record.owner_user_id != principal.id and USER_MANAGER not in principal.traits):
            if record is not None:
                annotate(why="not_owner")
            raise _key_not_found()
        return pb.RevokeApiKeyResponse(key=key_message(await self._keys.revoke(request.key_id)))
