"""Validate one `security.allowed_tunnels` entry of a manifest: `host:port`.

The host follows exactly the rules of an `allowed_domains` entry (the same
function checks it), so a tunnel allowlist can never be wider than a fetch
allowlist could be; the port is a TCP port, written in plain decimal.
"""

from __future__ import annotations

import re

from vivified.core.errors import VivifiedError
from vivified.core.manifest._domains import validate_allowed_domain
from vivified.core.manifest._problem import manifest_invalid, show

_PORT = re.compile(r"[1-9][0-9]{0,4}")


def validate_tunnel(entry: str) -> tuple[str, int]:
    """(normalised host, port) of a `host:port` entry, or raise MANIFEST_INVALID."""
    host, colon, port = entry.rpartition(":") if isinstance(entry, str) else ("", "", "")
    if not colon or not host:
        raise manifest_invalid(f"security.allowed_tunnels: {show(entry)} must be host:port, e.g. smtp.example.com:587")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise manifest_invalid(f"security.allowed_tunnels: {show(entry)} refused: the port must be 1-65535")
    try:
        normalised = validate_allowed_domain(host)
    except VivifiedError as exc:  # re-raised under this field's name
        message = exc.message.removeprefix("security.allowed_domains: ")
        raise manifest_invalid(f"security.allowed_tunnels: {message}") from None
    return normalised, int(port)
