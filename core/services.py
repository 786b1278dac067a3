"""Every service the core serves, in one list: `SERVED`.

Each entry (`Served`) is one service binding and everything the core needs
to know of it: its full name (reflection, and what other tools iterate to
describe the core's API), the generated function that adds it to a server,
which servicer of `Services` serves it, the policy rules that let callers
reach it, and the per-method facts its interceptor chain reads
(`METHODS`: when a method is audited, which resource its request names).
The chain and the server read these; no generic layer names a method.

Adding a service to the core, step by step:

1. Define it in `proto/` and generate (`buf generate`).
2. Write its servicer. Handlers raise `vivified.core.errors` errors and add
   facts to the call's one audit record with `annotate(...)` (a `resource`
   such as `user/<id>` when the request does not name one below).
3. Add a field for the servicer to `Services` and build it where the core
   builds the others (`vivified.core.app`, the `Services(...)` call).
4. Add a `Served` entry to `SERVED`: name, add function, the `Services` field
   (`servicer`), `rules` (the ids in `core/policy/rules.json` that grant it;
   policy is default deny, so without a rule no caller reaches it), and
   `methods` for every method not audited the default way (a unary call when
   it has its outcome, a stream when it opens) or whose request names the
   object its record is about (`resource`). `tests/core/test_services.py`
   checks that the rules exist, name this service, and that every rule naming
   a served service is declared by its entry.
5. Add those rules to `core/policy/rules.json`.
6. Test it end to end through the real chain (`vivified.core.harness.serve`
   or a real core process), each deny path asserting code, ErrorInfo reason
   and exactly one audit record.

Which caller may reach which method is the policy's business (rules.json):
users reach the identity, config, audit-query and catalogue services on the
bootstrap port with a bearer token or API key, plugins and operators the
rest over mTLS."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from vivified.admin.v1 import (
    access_catalogue_pb2_grpc,
    audit_query_pb2_grpc,
    event_admin_pb2_grpc,
    plugin_admin_pb2_grpc,
)
from vivified.config.v1 import config_pb2_grpc
from vivified.core.audit import AuditQueryService
from vivified.core.chain import MethodFacts
from vivified.core.egress import EgressService
from vivified.core.events import EventBus
from vivified.core.gateway import GatewayService
from vivified.core.identity import Identity
from vivified.core.plugin_config import ConfigService
from vivified.core.registry import AdminService, RegistryService
from vivified.core.server import Binding
from vivified.core.storage import ObjectStoreService
from vivified.core.traits import AccessCatalogueService
from vivified.egress.v1 import egress_pb2_grpc
from vivified.events.v1 import events_pb2_grpc
from vivified.gateway.v1 import gateway_pb2_grpc
from vivified.identity.v1 import api_keys_pb2_grpc, auth_pb2_grpc, user_admin_pb2_grpc
from vivified.registry.v1 import registry_pb2_grpc
from vivified.storage.v1 import object_store_pb2_grpc


@dataclass(frozen=True)
class Services:
    """The servicers of one core, built by `vivified.core.app`."""

    registry: RegistryService
    plugin_admin: AdminService
    health: health.aio.HealthServicer
    gateway: GatewayService
    egress: EgressService
    storage: ObjectStoreService
    events: EventBus
    identity: Identity
    config: ConfigService
    audit_query: AuditQueryService
    access: AccessCatalogueService

    def bindings(self) -> list[Binding]:
        """Each served service with its servicer, for `build_server`."""
        return [Binding(served.servicer(self), served.add, served.name) for served in SERVED]


@dataclass(frozen=True)
class Served:
    """One service the core serves (see the module docstring)."""

    name: str
    """Full proto service name, e.g. `vivified.registry.v1.PluginRegistryService`."""
    add: Callable[[Any, grpc.aio.Server], None]
    """The generated `add_<Service>Servicer_to_server`."""
    servicer: Callable[[Services], Any]
    """Which of the core's servicers serves it."""
    rules: tuple[str, ...]
    """Ids of the rules in core/policy/rules.json that grant callers this service."""
    methods: Mapping[str, MethodFacts] = field(default_factory=dict)
    """Facts of the methods not handled the default way, by method name."""


def plugin_named(request: Any) -> str | None:
    """`plugin/<id>` for a request naming a plugin by `plugin_id` or by its `manifest`."""
    plugin_id = getattr(request, "plugin_id", None)
    if isinstance(plugin_id, str) and plugin_id:
        return f"plugin/{plugin_id}"
    manifest = getattr(request, "manifest", None)
    if manifest is not None and getattr(manifest, "id", None):
        return f"plugin/{manifest.id}"
    return None


NAMES_PLUGIN = MethodFacts(resource=plugin_named)
"""The request names the plugin the call acts on: that is the record's resource."""

LIVENESS = MethodFacts(unaudited_when_ok=True)
"""Liveness answered OK is counted in metrics (`vivified_rpc_calls`,
`vivified_plugin_heartbeats`), not audited one by one: a plugin heartbeats
every few seconds. The registry audits liveness as transitions instead
(`plugin.healthy`, `plugin.unhealthy`, `plugin.recovered`). A refused or
failed heartbeat or health check is still audited, each one."""

TUNNEL = MethodFacts(audit_at_end=True, record_when_cancelled=True)
"""An egress stream carries traffic for as long as it is open: its one record,
at its end, carries the bytes each way and its duration, also when the caller
cancels it."""

DECIDED_BY_HANDLER = MethodFacts(audit_at_end=True)
"""A stream whose handler decides (and annotates) only after reading the
request: recorded at its end like a unary call. The streamed publish records
each event too; Subscribe's handler also records the open once it has checked
the subscription (`AuditRecorder.record_stream_open`)."""


SERVED: tuple[Served, ...] = (
    Served(
        "vivified.registry.v1.PluginRegistryService",
        registry_pb2_grpc.add_PluginRegistryServiceServicer_to_server,
        lambda s: s.registry,
        ("bootstrap-register", "plugin-registry-self"),
        {"Register": NAMES_PLUGIN, "Resume": NAMES_PLUGIN, "Heartbeat": LIVENESS},
    ),
    Served(
        "vivified.admin.v1.PluginAdminService",
        plugin_admin_pb2_grpc.add_PluginAdminServiceServicer_to_server,
        lambda s: s.plugin_admin,
        ("operator-plugin-admin", "user-plugin-admin"),
        {
            m: NAMES_PLUGIN
            for m in ("ApprovePlugin", "EnablePlugin", "DisablePlugin", "RevokePlugin", "ReportPluginFailure")
        },
    ),
    Served(
        "grpc.health.v1.Health",
        health_pb2_grpc.add_HealthServicer_to_server,
        lambda s: s.health,
        ("health-check",),
        {"Check": LIVENESS},
    ),
    Served(
        "vivified.gateway.v1.OperatorGatewayService",
        gateway_pb2_grpc.add_OperatorGatewayServiceServicer_to_server,
        lambda s: s.gateway,
        ("plugin-operator-lane", "user-operator-lane"),
    ),
    Served(
        "vivified.egress.v1.EgressProxyService",
        egress_pb2_grpc.add_EgressProxyServiceServicer_to_server,
        lambda s: s.egress,
        ("plugin-egress",),
        {"StreamFetch": TUNNEL, "Connect": TUNNEL},
    ),
    Served(
        "vivified.storage.v1.ObjectStoreService",
        object_store_pb2_grpc.add_ObjectStoreServiceServicer_to_server,
        lambda s: s.storage,
        ("plugin-object-store",),
        # the handler names the object (and checks who may see it) only after
        # reading the request: a put's header, a get's name
        {"PutObject": DECIDED_BY_HANDLER, "GetObject": DECIDED_BY_HANDLER},
    ),
    Served(
        "vivified.events.v1.EventBusService",
        events_pb2_grpc.add_EventBusServiceServicer_to_server,
        lambda s: s.events.service,
        ("plugin-event-bus",),
        {"PublishStream": DECIDED_BY_HANDLER, "Subscribe": DECIDED_BY_HANDLER},
    ),
    Served(
        "vivified.admin.v1.EventAdminService",
        event_admin_pb2_grpc.add_EventAdminServiceServicer_to_server,
        lambda s: s.events.admin,
        ("operator-event-admin", "user-event-admin"),
    ),
    Served(
        "vivified.identity.v1.AuthService",
        auth_pb2_grpc.add_AuthServiceServicer_to_server,
        lambda s: s.identity.auth,
        ("user-sign-in", "user-own-session"),
    ),
    Served(
        "vivified.identity.v1.UserAdminService",
        user_admin_pb2_grpc.add_UserAdminServiceServicer_to_server,
        lambda s: s.identity.users,
        ("user-read-self", "user-admin", "operator-user-admin"),
    ),
    Served(
        "vivified.identity.v1.ApiKeyService",
        api_keys_pb2_grpc.add_ApiKeyServiceServicer_to_server,
        lambda s: s.identity.api_keys,
        ("user-api-keys",),
    ),
    Served(
        "vivified.config.v1.ConfigService",
        config_pb2_grpc.add_ConfigServiceServicer_to_server,
        lambda s: s.config,
        ("operator-config-admin", "user-config-admin", "plugin-config-self"),
        {m: NAMES_PLUGIN for m in ("SetPluginConfigValue", "GetPluginConfig", "ListPluginConfigHistory")},
    ),
    Served(
        "vivified.admin.v1.AuditQueryService",
        audit_query_pb2_grpc.add_AuditQueryServiceServicer_to_server,
        lambda s: s.audit_query,
        ("operator-audit-query", "user-audit-query"),
        # the handler checks the filter, then records the watch's open once
        # (`record_stream_open`), never per record sent; a watcher the core
        # cuts off (SUBSCRIBER_TOO_SLOW) is recorded at its end
        {"WatchAuditRecords": DECIDED_BY_HANDLER},
    ),
    Served(
        "vivified.admin.v1.AccessCatalogueService",
        access_catalogue_pb2_grpc.add_AccessCatalogueServiceServicer_to_server,
        lambda s: s.access,
        ("operator-access-catalogue", "user-access-catalogue"),
    ),
)
"""The services the core serves, in registration order."""


def method_table(served: tuple[Served, ...]) -> dict[str, MethodFacts]:
    """Per-method facts by full method name, for `ChainDeps.methods`."""
    return {f"/{s.name}/{method}": facts for s in served for method, facts in s.methods.items()}


METHODS: Mapping[str, MethodFacts] = method_table(SERVED)
"""What the core's chain knows of each served method (`ChainDeps.methods`)."""
