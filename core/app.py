"""The core process: wires CA, registry, policy, audit, metrics and the server.

Runtime settings (the `runtime=True` keys administrators may override in the
database) reach the components as zero-argument getters on the Core's
LiveSettings, read when the component acts, so a change applies without a
restart.

`Core.start()` refuses to start on anything insecure or unreadable (key files
readable by others, a corrupt policy file) and says why; nothing falls back to
a weaker default."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import pathlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import Message
from grpc_health.v1 import health
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from vivified.core.audit import (
    AuditLog,
    AuditQueryService,
    AuditRecord,
    CheckpointSigner,
    Durability,
    TailCheck,
)
from vivified.core.ca import (
    CAConfig,
    CertificateAuthority,
    PeerCertificateParser,
    new_private_key,
    write_private_key,
)
from vivified.core.chain import (
    AuditRecorder,
    Authenticator,
    ConcurrencyLimits,
    StreamTracker,
    TokenBuckets,
    build_chain,
    call_principal,
)
from vivified.core.chain import annotate as chain_annotate
from vivified.core.clock import Clock, SystemClock
from vivified.core.config import CoreConfig
from vivified.core.db import create_engine_for, sqlite_url, unavailable
from vivified.core.egress import EgressService, endpoints_from
from vivified.core.errors import Unavailable
from vivified.core.events import EventBus, open_event_store
from vivified.core.gateway import (
    ContractProxy,
    Forwarder,
    GatewayService,
    OperatorLane,
    PolicySet,
)
from vivified.core.identity import EMERGENCY_TRAITS, Activation, build_identity
from vivified.core.metrics import Metrics
from vivified.core.plugin_config import ConfigFollower, ConfigService, PluginConfigStore, SecretsKeyring
from vivified.core.policy import load_default_rules, rules_sha256
from vivified.core.rest import served_service_names
from vivified.core.registry import PluginRecord, PluginStore
from vivified.core.registry._admin_service import AdminService
from vivified.core.registry._connector import CoreIdentity, PluginConnector
from vivified.core.registry._monitor import HealthMonitor, liveness_audit
from vivified.core.registry._registry_service import RegistryService
from vivified.core.registry._lease import LifecycleLeases
from vivified.core.registry._replicas import follow_registry
from vivified.core.registry._sync import RegistrySync
from vivified.core.server import build_server, check_cipher_suites
from vivified.core.services import Services
from vivified.core.settings import (
    CoreSettingsAdmin,
    LiveSettings,
    Override,
    OverrideStore,
    apply_overrides,
    read_overrides,
)
from vivified.core.storage import build_object_store
from vivified.core.traits import AccessCatalogueService, TraitCatalogue
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL, SecurityAlert

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningCore:
    """Where a started core listens; also written to `<data_dir>/run/core.json`."""

    pid: int
    listen_address: str
    bootstrap_address: str
    metrics_address: str
    trust_domain: str


def _with_port(address: str, port: int) -> str:
    return f"{address.rpartition(':')[0]}:{port}"


def _pem_key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Core:
    """One core broker process."""

    def __init__(self, config: CoreConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.running: RunningCore | None = None
        self._server: grpc.aio.Server | None = None
        self._audit: AuditLog | None = None
        self._monitor: HealthMonitor | None = None
        self._connector: PluginConnector | None = None
        self._events: EventBus | None = None
        self._registry_sync: RegistrySync | None = None
        self._config_follower: ConfigFollower | None = None
        self.settings: LiveSettings | None = None
        self._audit_alert: SecurityAlert | None = None
        self._alert_tasks: set[asyncio.Task[None]] = set()

    def _load_ca(self) -> CertificateAuthority:
        ca_config = CAConfig(
            trust_domain=self.config.trust_domain, leaf_ttl=dt.timedelta(seconds=self.config.leaf_ttl_seconds)
        )
        paths = self.config.ca_paths
        if paths is not None:
            return CertificateAuthority.load(
                paths.root_certificate, paths.issuing_certificate, paths.issuing_key, ca_config, self.clock
            )
        return CertificateAuthority.load_or_create(self.config.data_dir / "ca", ca_config, self.clock)

    def _write_operator_identity(
        self, ca: CertificateAuthority, is_revoked: Callable[[int], bool]
    ) -> tuple[int, int] | None:
        """Give the local operator (CLI, grpcurl) a client certificate; returns
        (serial, not_after) of a newly issued one, None when the current one is
        kept (more than half its lifetime left, not revoked)."""
        directory = self.config.data_dir / "operator"
        directory.mkdir(mode=0o700, exist_ok=True)
        cert_path = directory / "operator.crt"
        if cert_path.exists():
            current = x509.load_pem_x509_certificate(cert_path.read_bytes())
            left = current.not_valid_after_utc - self.clock.now()
            if left > ca.config.operator_ttl / 2 and not is_revoked(current.serial_number):
                (directory / "ca.crt").write_bytes(ca.root_pem)
                return None
        key = new_private_key()
        issued = ca.issue_operator_certificate("admin", key)
        key_path = directory / "operator.key"
        key_path.unlink(missing_ok=True)
        write_private_key(key_path, key)
        cert_path.write_bytes(issued.chain_pem)
        (directory / "ca.crt").write_bytes(ca.root_pem)
        return issued.serial, int(issued.not_after.timestamp())

    def _open_settings(self, engine: sa.Engine) -> tuple[CoreConfig, OverrideStore, LiveSettings]:
        """The top layer of the settings hierarchy: runtime overrides stored by
        administrators, applied before any component reads the config; while
        the core runs, LiveSettings applies later changes."""
        base = self.config
        try:
            overrides = apply_overrides(base, read_overrides(engine))
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise unavailable(exc, engine.url) from None
        config = self.config = overrides.config
        for key, problem in overrides.refused.items():
            _log.error("runtime override of %s not applied: %s", key, problem)
        store = OverrideStore(engine, self.clock)
        self.settings = LiveSettings(base, store, overrides, interval=config.settings_refresh_seconds)
        return config, store, self.settings

    async def _start_audit(
        self, engine: sa.Engine, audit_dir: pathlib.Path, overrides: Mapping[str, Override]
    ) -> AuditLog:
        audit = AuditLog(
            engine,
            clock=self.clock,
            signer=CheckpointSigner.load_or_create(audit_dir / "checkpoint.key"),
            checkpoint_path=audit_dir / "checkpoints.jsonl",
            checkpoint_every=self.config.audit_checkpoint_seconds,
            on_commit=self.metrics.on_audit_commit,
            shared_chain=self.config.audit_writers == "shared",
            durability=Durability(self.config.audit_durability, self.config.audit_sync_interval),
            on_failure=self._audit_failure_hook(asyncio.get_running_loop()),
        )
        # Refuses (AuditTailTampered) to extend a tail that fails its check,
        # unless the operator accepted that very first bad seq for this run.
        check = await audit.start(accept_tampering=self.config.accept_audit_tampering)
        detail = {"pid": str(os.getpid()), "overrides": ",".join(f"{k}={o.value}" for k, o in overrides.items())}
        if check.tampered:
            await audit.append(self._tampering_accepted(check))
        elif check.unanchored is not None:
            first, last = check.unanchored
            detail |= {"unanchored_from": str(first), "unanchored_to": str(last)}
            _log.warning("audit records %d..%d had no checkpoint (crash); their chain verified", first, last)
        await audit.append(
            AuditRecord(actor="core:core", action="core.start", resource=self.config.profile, detail=detail)
        )
        return audit

    def _audit_failure_hook(self, loop: asyncio.AbstractEventLoop) -> Callable[[BaseException], None]:
        """Called on the audit writer's thread when records cannot be written:
        publishes a critical SecurityAlert on the bus (it cannot be audited;
        the calls themselves fail closed)."""

        def publish(kind: str) -> None:
            if self._events is None:
                _log.critical("audit writes failing (%s) before the event bus runs: no alert published", kind)
                return
            alert = SecurityAlert(
                alert_id=uuid.uuid4().hex,
                kind="audit_write_failed",
                severity=SEVERITY_CRITICAL,
                summary=f"the audit log cannot record calls ({kind}): they are refused",
                subject="audit",
                details={"error": kind, "durability": self.config.audit_durability},
            )
            task = loop.create_task(self._publish_alert(alert))
            self._alert_tasks.add(task)
            task.add_done_callback(self._alert_tasks.discard)

        def hook(exc: BaseException) -> None:
            _log.critical("audit writes failing: %s", type(exc).__name__)
            try:
                loop.call_soon_threadsafe(publish, type(exc).__name__)
            except RuntimeError:
                _log.critical("audit writes failing after the core's event loop closed")

        return hook

    async def _publish_alert(self, alert: SecurityAlert) -> None:
        try:
            if self._events is not None:
                await self._events.publish_core_event(f"alert-{alert.alert_id}", alert)
        except Exception:  # noqa: BLE001 - logged: the alert has nowhere else to go
            _log.exception("SecurityAlert %s (%s) could not be published", alert.alert_id, alert.kind)

    def _tampering_accepted(self, check: TailCheck) -> AuditRecord:
        """The first record of a core started on a tampered tail, and the
        SecurityAlert published once the event bus runs."""
        seq = str(check.first_bad_seq)
        self._audit_alert = SecurityAlert(
            alert_id=uuid.uuid4().hex,
            kind="audit_tampering_accepted",
            severity=SEVERITY_CRITICAL,
            summary=f"core started on a tampered audit log (first bad sequence {seq}): {check.problem}",
            subject=f"audit/{seq}",
            details={"first_bad_seq": seq, "problem": check.problem[:1000]},
        )
        _log.critical("starting on a tampered audit log, as --accept-audit-tampering %s asks: %s", seq, check.problem)
        return AuditRecord(
            actor="core:core",
            action="audit.tampering_accepted",
            resource=f"audit/{seq}",
            reason="AUDIT_TAIL_TAMPERED",
            detail={"first_bad_seq": seq, "problem": check.problem[:1000], "alert_id": self._audit_alert.alert_id},
        )

    async def _plugin_store(self, engine: sa.Engine, policy: PolicySet) -> PluginStore:
        """The registry's store, with the policy's manifest-derived rules and
        the plugin metrics following each plugin's status and health."""
        store = PluginStore(engine, self.clock, sync_bound=self.config.registry_sync_bound_seconds)
        await store.load()
        policy.rebuild(store.all())
        self.metrics.on_plugins(store.all())
        seen = {r.plugin_id: (r.status, r.health) for r in store.all()}

        def on_change(record: PluginRecord) -> None:
            # Heartbeats publish too; only a status or health change matters here.
            before = seen.get(record.plugin_id)
            seen[record.plugin_id] = (record.status, record.health)
            if before is None or before[0] != record.status:
                policy.rebuild(store.all())  # manifest-derived rules follow status
            if before != (record.status, record.health):
                self.metrics.on_plugins(store.all())

        store.subscribe(on_change)
        return store

    async def _announce_break_glass(self, activation: Activation) -> None:
        """A break-glass activation: a critical audit record, then a SecurityAlert
        on the bus (the reason stays in the audit log). Either failing fails
        the call that asked for it."""
        if self._audit is None or self._events is None:
            raise Unavailable("the core is not ready for break-glass", reason="CORE_STARTING")
        until = dt.datetime.fromtimestamp(activation.expires_at, dt.UTC).isoformat()
        details = {"activation_id": activation.activation_id, "user_id": activation.user_id, "expires_at": until}
        await self._audit.append(
            AuditRecord(
                actor=f"user:{activation.user_id}",
                action="identity.break_glass.activate",
                resource=f"user/{activation.user_id}",
                decision="allow",
                reason="BREAK_GLASS_ACTIVATED",
                rule_id="break-glass",
                detail={**details, "severity": "critical", "reason": activation.reason,
                        "traits": ",".join(sorted(EMERGENCY_TRAITS))},
            )
        )
        _log.warning("break-glass activated by user %s until %s (%s)", activation.user_id, until,
                     activation.activation_id)
        alert = SecurityAlert(
            alert_id=uuid.uuid4().hex,
            kind="break_glass_activated",
            severity=SEVERITY_CRITICAL,
            summary=f"user {activation.user_id} broke glass: emergency access until {until}",
            subject=f"user/{activation.user_id}",
            details=details,
        )
        await self._events.publish_core_event(f"alert-{alert.alert_id}", alert)

    async def start(self) -> RunningCore:
        config = self.config
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_cipher_suites(os.environ.get("GRPC_SSL_CIPHER_SUITES"))
        engine = create_engine_for(config.database_url or sqlite_url(config.data_dir / "vivified.db"))
        config, override_store, live = self._open_settings(engine)
        audit_dir = config.data_dir / "audit"
        audit_dir.mkdir(mode=0o700, exist_ok=True)
        rules = load_default_rules(config.policy_file)
        for rule in rules:
            if rule.report_only_since is not None:
                _log.warning("policy rule %s is report-only since %s: audited, not enforced",
                             rule.id, rule.report_only_since.isoformat())
        policy = PolicySet(rules, on_report_only=self.metrics.on_report_only)
        catalogue = TraitCatalogue.load_default()
        ca = self._load_ca()
        core_key = new_private_key()
        core_cert = ca.issue_core_certificate(core_key)
        key_pem = _pem_key(core_key)

        self._audit = await self._start_audit(engine, audit_dir, live.applied.overrides)
        await self._audit.append(
            AuditRecord(
                actor="core:core",
                action="policy.load",
                resource=str(config.policy_file) if config.policy_file is not None else "packaged",
                detail={
                    "rules": str(len(rules)),
                    "sha256": rules_sha256(rules),
                    "report_only": ",".join(
                        f"{r.id}@{r.report_only_since.isoformat()}" for r in rules if r.report_only_since is not None
                    ),
                },
            )
        )
        store = await self._plugin_store(engine, policy)
        operator_cert = self._write_operator_identity(ca, store.is_revoked_serial)
        if operator_cert is not None:
            await store.record_certificate("operator/admin", *operator_cert)  # listable, revocable
            await self._audit.append(
                AuditRecord(
                    actor="core:core",
                    action="certificate.issue",
                    resource="operator/admin",
                    detail={"serial": format(operator_cert[0], "x")},
                )
            )

        # Identity: users sign in on the bootstrap port; the chain turns their
        # bearer tokens into `user` principals. A weak token key stops start-up.
        identity = build_identity(
            engine=engine, clock=self.clock, data_dir=config.data_dir, config=config.identity, traits=catalogue,
            announce_break_glass=self._announce_break_glass,
            publish=self._publish_core_event,
            policy_index=policy.index, served_services=served_service_names(),
        )

        # Plugin configuration: secret values are sealed under the secrets key;
        # a missing, weak or exposed key stops start-up (SECRETS_KEY_INSECURE).
        keyring = SecretsKeyring.load(
            environ_value=config.secrets_key, key_file=config.secrets_key_file, data_dir=config.data_dir
        )
        config_store = PluginConfigStore(engine, self.clock, keyring)
        plugin_config = ConfigService(config_store, store.get, CoreSettingsAdmin(override_store, live))
        # WatchMyConfig streams here hear of changes made through other replicas.
        self._config_follower = ConfigFollower(config_store, engine, interval=config.registry_sync_bound_seconds / 4)

        streams = StreamTracker()
        parser = PeerCertificateParser(config.trust_domain)
        authenticator = Authenticator(parser, store.is_revoked_serial)
        recorder = AuditRecorder(self._audit)
        limits = ConcurrencyLimits(lambda: live.current.concurrency)
        self.metrics.watch_concurrency(limits.totals)
        chain = build_chain(
            tracer=TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("vivified.core"),
            authenticator=authenticator,
            plugin_lookup=store.get,
            streams=streams,
            buckets=TokenBuckets(lambda: live.current.rate_limit, self.clock),
            policy_index=policy.index,
            on_decision=self.metrics.on_decision,
            audit=recorder,
            on_done=self.metrics.on_call_done,
            credentials=identity.principal,
            registry_stale=store.stale,
            concurrency=limits,
        )
        self._connector = PluginConnector(
            CoreIdentity(ca.root_pem, core_cert.chain_pem, key_pem, config.trust_domain), self.clock
        )
        self._monitor = HealthMonitor(
            store,
            self._connector,
            self.clock,
            interval=lambda: live.current.heartbeat_interval_seconds,
            misses=config.heartbeat_misses,
            init_timeout=config.init_timeout_seconds,
            # This process's lifecycle leases: a new replica id per start, so a
            # restarted replica does not resume leases it may no longer deserve.
            leases=LifecycleLeases(
                engine, self.clock, f"replica-{uuid.uuid4().hex}",
                ttl=lambda: live.current.heartbeat_interval_seconds * config.heartbeat_misses,
            ),
            on_change=liveness_audit(self._audit),
            on_heartbeat=self.metrics.on_heartbeat,
        )
        connector = self._connector
        self._registry_sync = follow_registry(store, engine, streams)


        async def revoked(plugin_id: str) -> None:
            record = store.get(plugin_id)
            if record is not None:
                await connector.shutdown(record, "revoked")
            await connector.forget(plugin_id)

        registry = RegistryService(
            store=store,
            ca=ca,
            catalogue=catalogue,
            authenticator=authenticator,
            monitor=self._monitor,
            streams=streams,
            heartbeat_interval=lambda: live.current.heartbeat_interval_seconds,
            leaf_ttl=lambda: dt.timedelta(seconds=live.current.leaf_ttl_seconds),
            on_revoked=revoked,
            core_endpoint=lambda: self.running.listen_address if self.running is not None else "",
        )
        admin = AdminService(
            store=store,
            catalogue=catalogue,
            streams=streams,
            clock=self.clock,
            token_ttl_seconds=config.join_token_ttl_seconds,
            on_revoked=revoked,
        )
        lane = OperatorLane(
            policy=policy,
            forwarder=Forwarder(
                config=lambda: live.current.gateway,
                lookup=store.get,
                connector=self._connector,
                clock=self.clock,
                on_breaker=self.metrics.on_breaker,
            ),
            lookup=store.get,
            delegations=identity.delegations,
        )
        egress = EgressService(
            plugin_lookup=store.get,
            identify=authenticator.principal,
            annotate=lambda _context, fields: chain_annotate(**fields),
            config=config.egress,
            clock=self.clock,
            own_endpoints=endpoints_from([config.listen_address, config.bootstrap_address, config.metrics_address]),
            environ=os.environ,
            max_message_bytes=config.max_message_bytes,
            plugin_secret=config_store.secret,
        )
        object_store = build_object_store(
            config=config, engine=engine, keyring=keyring, clock=self.clock, lookup=store.get,
            identify=authenticator.principal, delegations=identity.delegations,
        )
        self._events = EventBus(
            config=lambda: live.current.events,
            store=open_event_store(lambda: live.current.events, config.data_dir, self.clock),
            lookup=store.get,
            identify=authenticator.principal,
            audit=self._audit,
            record_open=recorder.record_stream_open,
            metrics=self.metrics,
            clock=self.clock,
        )
        try:
            await self._events.start()
        except Unavailable as exc:
            await self._audit.close()
            raise Unavailable(f"event store: {exc.message}", reason=exc.reason) from None
        if self._audit_alert is not None:
            await self._events.publish_core_event(f"alert-{self._audit_alert.alert_id}", self._audit_alert)
        self._server, mtls_port, bootstrap_port = build_server(
            config=config,
            chain=chain,
            bindings=Services(
                registry=registry,
                plugin_admin=admin,
                health=health.aio.HealthServicer(),
                gateway=GatewayService(lane, call_principal),
                egress=egress,
                storage=object_store,
                events=self._events,
                identity=identity,
                config=plugin_config,
                audit_query=AuditQueryService(engine, audit_dir),
                access=AccessCatalogueService(catalogue, identity.roles),
            ).bindings(),
            contract_proxy=ContractProxy(lane, call_principal),
            root_pem=ca.root_pem,
            chain_pem=core_cert.chain_pem,
            key_pem=key_pem,
        )
        # Read the registry once more right before serving: start-up after the first
        # load can take longer than the sync bound, and calls would then be refused stale.
        await store.sync()
        await self._server.start()
        metrics_port = self.metrics.serve(config.metrics_address)
        self._monitor.start()
        self._registry_sync.start()
        await self._config_follower.start()
        live.start()
        self.running = RunningCore(
            pid=os.getpid(),
            listen_address=_with_port(config.listen_address, mtls_port),
            bootstrap_address=_with_port(config.bootstrap_address, bootstrap_port),
            metrics_address=_with_port(config.metrics_address, metrics_port),
            trust_domain=config.trust_domain,
        )
        egress.listening_on(
            [self.running.listen_address, self.running.bootstrap_address, self.running.metrics_address]
        )
        self._write_run_file(self.running)
        _log.info("core listening: mTLS %s, bootstrap %s", self.running.listen_address, self.running.bootstrap_address)
        return self.running

    async def _publish_core_event(self, payload: Message) -> None:
        """The core's own events (identity's UserCreated/UserUpdated) go through the event bus."""
        if self._events is None:
            raise Unavailable("the event bus is not running", reason="EVENT_STORE_UNAVAILABLE", domain="vivified.events")
        await self._events.publish_core(payload)

    def _write_run_file(self, running: RunningCore) -> None:
        path = run_file(self.config.data_dir)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(running.__dict__))
        tmp.replace(path)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float = 3.0) -> None:
        """Stop serving, finish in-flight calls, write the final audit checkpoint."""
        if self.settings is not None:
            await self.settings.stop()
        if self._monitor is not None:
            await self._monitor.stop()
        if self._registry_sync is not None:
            await self._registry_sync.stop()
        if self._config_follower is not None:
            await self._config_follower.stop()
        if self._server is not None:
            await self._server.stop(grace)
        if self._connector is not None:
            await self._connector.close()
        if self._events is not None:
            await self._events.stop()
        if self._audit is not None:
            await self._audit.close()
        self.metrics.stop()
        run_file(self.config.data_dir).unlink(missing_ok=True)


def run_file(data_dir: pathlib.Path) -> pathlib.Path:
    return data_dir / "run" / "core.json"

