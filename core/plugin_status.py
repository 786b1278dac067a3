"""A plugin's status in the registry.

A leaf module (it imports nothing of the core) so the chain's status gate,
the registry and the services that check a plugin can all name the members.
The values are the strings stored in the `plugins` table and sent on the wire."""

from __future__ import annotations

from enum import StrEnum


class PluginStatus(StrEnum):
    """approved (manifest approved, not registered yet) → active ⇄ disabled; any → revoked."""

    APPROVED = "approved"
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"
