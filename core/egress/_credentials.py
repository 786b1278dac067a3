"""Credential injection: the core adds a secret header for a (plugin, domain),
so the plugin never holds the secret.

Values are read from the environment once, when the egress service is built,
and kept in `Secret` objects whose repr never shows them. They are sent only
over https: a credential is never written to a plaintext connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vivified.core.egress._allowlist import host_matches
from vivified.core.egress._config import CredentialRule
from vivified.core.egress._errors import config_invalid


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
                raise config_invalid(f"credential for {rule.plugin_id}/{rule.domain}: ${rule.value_env} is unset or empty")
            if any(ch in value for ch in "\r\n\0") or not value.isprintable():
                raise config_invalid(f"credential ${rule.value_env} contains characters a header cannot carry")
            resolved.append(Credential(rule.plugin_id, rule.domain, rule.header, Secret(value)))
        self._by_plugin: dict[str, list[Credential]] = {}
        for credential in resolved:
            self._by_plugin.setdefault(credential.plugin_id, []).append(credential)

    def headers_for(self, plugin_id: str, host: str) -> list[tuple[str, str]]:
        """(name, value) pairs to inject for this plugin and host."""
        return [
            (c.header, c.secret.reveal())
            for c in self._by_plugin.get(plugin_id, ())
            if host_matches(c.domain, host)
        ]
