"""Credential injection: the core adds a secret header for a (plugin, domain),
so the plugin never holds the secret.

Two sources. Operator rules (`EgressConfig.credentials`): values are read
from the environment once, when the egress service is built, and kept in
`Secret` objects whose repr never shows them. Manifest declarations
(`security.injected_credentials`, `InjectedCredentials`): one exact host, a
header, and a `secret` config key of the plugin whose value the core reads at
each request from the plugin config store (the plugin's own config view
masks it). Either is sent only over https, only to its host (chosen again
for every redirect hop), and replaces a header of that name the plugin sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from vivified.core.egress._allowlist import host_matches
from vivified.core.egress._config import CredentialRule
from vivified.core.egress._errors import config_invalid, credential_unset
from vivified.manifest.v1.manifest_pb2 import InjectedCredential

SecretReader = Callable[[str, str], Awaitable[str | None]]
"""(plugin id, config key) → the clear value of that secret config value, or None when unset."""


def _header_safe(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable()


class Secret:
    """A secret string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class Credential:
    plugin_id: str
    domain: str
    header: str
    secret: Secret


class Credentials:
    """The resolved credential rules."""

    def __init__(self, rules: Iterable[CredentialRule], environ: Mapping[str, str]) -> None:
        resolved = []
        for rule in rules:
            value = environ.get(rule.value_env, "")
            if not value:
                raise config_invalid(
                    f"credential for {rule.plugin_id}/{rule.domain}: ${rule.value_env} is unset or empty"
                )
            if any(ch in value for ch in "\r\n\0") or not value.isprintable():
                raise config_invalid(f"credential ${rule.value_env} contains characters a header cannot carry")
            resolved.append(Credential(rule.plugin_id, rule.domain, rule.header, Secret(value)))
        self._by_plugin: dict[str, list[Credential]] = {}
        for credential in resolved:
            self._by_plugin.setdefault(credential.plugin_id, []).append(credential)

    def headers_for(self, plugin_id: str, host: str) -> list[tuple[str, str]]:
        """(name, value) pairs to inject for this plugin and host."""
        return [
            (c.header, c.secret.reveal()) for c in self._by_plugin.get(plugin_id, ()) if host_matches(c.domain, host)
        ]


async def _no_secrets(plugin_id: str, key: str) -> str | None:
    return None


class InjectedCredentials:
    """Headers a plugin's approved manifest has the core inject, read from its secret config."""

    def __init__(self, read: SecretReader | None = None) -> None:
        self._read = read or _no_secrets

    async def headers_for(
        self, plugin_id: str, declared: Sequence[InjectedCredential], host: str
    ) -> list[tuple[str, str]]:
        """(name, value) pairs for a request to exactly `host`; raises
        FailedPrecondition(EGRESS_CREDENTIAL_UNSET) when a declared value is
        unset or cannot be carried by a header."""
        found = []
        for credential in declared:
            if credential.host.lower().removesuffix(".") != host:
                continue
            value = await self._read(plugin_id, credential.config_key)
            if value is None or not _header_safe(value):
                why = "is not set" if value is None else "has characters a header cannot carry"
                raise credential_unset(
                    f"the credential for {host} (config key {credential.config_key}) {why}; an administrator sets it"
                )
            found.append((credential.header, credential.value_prefix + value))
        return found
