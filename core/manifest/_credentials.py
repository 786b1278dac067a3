"""`security.injected_credentials`: headers the core adds to a plugin's fetches
from a secret it holds. Each names one exact host of `allowed_domains`, an HTTP
header the core does not own on the wire, and a `secret` config field of the
same manifest; one header per host at most."""

from __future__ import annotations

import re

from vivified.core.manifest._domains import validate_allowed_domain
from vivified.core.manifest._problem import manifest_invalid, show
from vivified.manifest.v1.manifest_pb2 import ConfigFieldType, PluginManifest

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
# Headers the core sets or strips itself; a credential may not name them.
_RESERVED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "accept-encoding",
        "expect",
        "cookie",
        "cookie2",
        "proxy-connection",
    }
)
MAX_PREFIX_LENGTH = 32


def injected_config_keys(manifest: PluginManifest) -> frozenset[str]:
    """The config keys whose values the core injects (the plugin cannot read them)."""
    return frozenset(c.config_key for c in manifest.security.injected_credentials)


def check_injected_credentials(manifest: PluginManifest) -> None:
    """Raise MANIFEST_INVALID naming the entry that breaks a rule."""
    allowed = {validate_allowed_domain(d) for d in manifest.security.allowed_domains}
    secrets = {f.name for f in manifest.config if f.type == ConfigFieldType.CONFIG_FIELD_TYPE_SECRET}
    seen: set[tuple[str, str]] = set()
    for index, credential in enumerate(manifest.security.injected_credentials):
        where = f"security.injected_credentials[{index}]"
        host = credential.host.lower().removesuffix(".")
        if host.startswith("*."):
            raise manifest_invalid(f"{where}.host: {show(credential.host)} must be one exact host, not a wildcard")
        if host not in allowed:
            raise manifest_invalid(f"{where}.host: {show(credential.host)} is not one of security.allowed_domains")
        header = credential.header
        if not _TOKEN.fullmatch(header):
            raise manifest_invalid(f"{where}.header: {show(header)} is not an HTTP header name")
        lowered = header.lower()
        if lowered in _RESERVED or lowered.startswith(("proxy-", "x-vivified-")):
            raise manifest_invalid(f"{where}.header: {show(header)} is a header the core sets or strips itself")
        if credential.config_key not in secrets:
            raise manifest_invalid(
                f"{where}.config_key: {show(credential.config_key)} must name a config field of type secret"
            )
        prefix = credential.value_prefix
        if len(prefix) > MAX_PREFIX_LENGTH or not prefix.isascii() or not prefix.isprintable():
            raise manifest_invalid(f"{where}.value_prefix: at most {MAX_PREFIX_LENGTH} printable ASCII characters")
        if (host, lowered) in seen:
            raise manifest_invalid(f"{where}: {header} for {host} is listed twice")
        seen.add((host, lowered))
