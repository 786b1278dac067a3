"""Per-plugin egress allowlists, built from that plugin's approved manifest only.

An entry is an exact host or `*.example.com`, which matches exactly one extra
label (`api.example.com`, not `example.com` nor `a.b.example.com`). Entries
were validated when the manifest was approved; they are normalised again here
with the same function, and one that no longer validates admits nothing — so a
stored manifest approved before the Public Suffix List guard (`*.co.kr`,
`*.fly.dev`) cannot widen egress either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from vivified.core.errors import VivifiedError
from vivified.core.manifest import validate_allowed_domain
from vivified.manifest.v1.manifest_pb2 import PluginManifest

_log = logging.getLogger(__name__)
DEFAULT_PORTS = frozenset({443})


def host_matches(pattern: str, host: str) -> bool:
    """Whether a normalised allowlist entry admits a normalised host."""
    if pattern.startswith("*."):
        label, dot, parent = host.partition(".")
        return bool(label) and bool(dot) and parent == pattern[2:]
    return host == pattern


class Allowlist:
    """The hosts and ports one plugin may fetch."""

    __slots__ = ("_exact", "_parents", "ports")

    def __init__(self, entries: Iterable[str], ports: Iterable[int] = ()) -> None:
        exact: set[str] = set()
        parents: set[str] = set()
        for entry in entries:
            try:
                normalised = validate_allowed_domain(entry)
            except VivifiedError:
                _log.error("ignoring an allowlist entry that no longer validates: %r", entry)
                continue
            if normalised.startswith("*."):
                parents.add(normalised[2:])
            else:
                exact.add(normalised)
        self._exact = frozenset(exact)
        self._parents = frozenset(parents)
        self.ports: frozenset[int] = frozenset(p for p in ports if 0 < p < 65536) or DEFAULT_PORTS

    @classmethod
    def from_manifest(cls, manifest: PluginManifest) -> Allowlist:
        return cls(manifest.security.allowed_domains, manifest.security.allowed_ports)

    def admits(self, host: str) -> bool:
        if host in self._exact:
            return True
        label, dot, parent = host.partition(".")
        return bool(label) and bool(dot) and parent in self._parents
