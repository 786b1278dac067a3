"""The object store's refusals, each with a stable reason."""

from __future__ import annotations

from vivified.core.errors import (
    Aborted,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

DOMAIN = "vivified.storage"
_RULE = {"rule_id": "storage-access"}


def name_invalid(why: str) -> InvalidArgument:
    return InvalidArgument(f"object name is invalid: {why}", reason="OBJECT_NAME_INVALID", domain=DOMAIN)


def request_invalid(why: str) -> InvalidArgument:
    return InvalidArgument(why, reason="OBJECT_REQUEST_INVALID", domain=DOMAIN)


def size_mismatch(declared: int, received: int) -> InvalidArgument:
    return InvalidArgument(
        f"the header declared {declared} bytes but the stream carried {received}{' or more' if received > declared else ''};"
        " nothing was stored",
        reason="OBJECT_SIZE_MISMATCH",
        domain=DOMAIN,
    )


def too_large(size: int, limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"object of {size} bytes is above the per-object limit of {limit} bytes",
        reason="OBJECT_TOO_LARGE",
        domain=DOMAIN,
        metadata={"limit_bytes": str(limit)},
    )


def quota_exceeded(used: int, size: int, quota: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"storing {size} more bytes would take the plugin to {used + size} bytes, above its quota of {quota} bytes;"
        " delete objects first",
        reason="STORAGE_QUOTA_EXCEEDED",
        domain=DOMAIN,
        metadata={"quota_bytes": str(quota), "used_bytes": str(used)},
    )


def not_found() -> NotFound:
    # The same answer for a missing object and for one the caller may not see,
    # so a name cannot be probed across plugins.
    return NotFound("no such object", reason="OBJECT_NOT_FOUND", domain=DOMAIN)


def trait_required(trait: str, who: str) -> PermissionDenied:
    return PermissionDenied(
        f"the object's classification requires the {trait} trait, which the {who} does not hold",
        reason="OBJECT_TRAIT_REQUIRED",
        domain=DOMAIN,
        metadata={**_RULE, "trait": trait},
    )


def share_not_declared(plugin_id: str) -> PermissionDenied:
    return PermissionDenied(
        f"sharing with {plugin_id!r} is not in this plugin's approved manifest (storage.share_with)",
        reason="OBJECT_SHARE_NOT_DECLARED",
        domain=DOMAIN,
        metadata=_RULE,
    )


def integrity_failed(object_id: str) -> DataLoss:
    return DataLoss(
        f"object {object_id} failed authentication (altered, truncated or moved); no content was returned",
        reason="OBJECT_INTEGRITY_FAILED",
        domain=DOMAIN,
    )


def key_unknown(object_id: str, kid: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"object {object_id} is wrapped under key {kid}, which is not in the configured storage keys;"
        " restore that key (VIVIFIED_SECRETS_KEY or the secrets key file)",
        reason="STORAGE_KEY_UNKNOWN",
        domain=DOMAIN,
    )


def rotation_required(kid: str, limit: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"key {kid} has wrapped {limit} data keys, the most one key may; add a new key in front and run"
        " 'vivified storage rewrap'",
        reason="STORAGE_KEY_ROTATION_REQUIRED",
        domain=DOMAIN,
    )


def conflict() -> Aborted:
    return Aborted("another write of the same object committed first; retry", reason="OBJECT_CONFLICT", domain=DOMAIN)


def retained(object_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"object {object_id} is under retention and may not be deleted yet", reason="OBJECT_RETAINED", domain=DOMAIN
    )
