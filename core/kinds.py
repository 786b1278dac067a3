"""The core's enumerations whose values are stored in databases, written in
rules and sent on the wire, so each is a `StrEnum`: a member compares equal
to, and stores as, the very string it always was.

A leaf module (it imports nothing of the core), so the chain, the policy, the
registry and the services can all name the members."""

from __future__ import annotations

from enum import StrEnum


class PrincipalKind(StrEnum):
    """Who a principal is: `plugin`, `operator` or `core` from the verified
    TLS peer certificate, `user` from a verified access token or API key on
    the bootstrap port, `anonymous` with neither. The values are the strings
    policy rules (`principal_kinds`) and audit actors (`plugin:<id>`) use."""

    PLUGIN = "plugin"
    OPERATOR = "operator"
    CORE = "core"
    USER = "user"
    ANONYMOUS = "anonymous"


class PluginStatus(StrEnum):
    """A plugin's status in the registry: approved (manifest approved, not
    registered yet) → active ⇄ disabled; any → revoked. The values are what
    the `plugins` table stores."""

    APPROVED = "approved"
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"
