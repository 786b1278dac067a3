"""The core process: composes the areas (each built by its package's
`build_*`, called by one method of `vivified.core.areas.Areas`) and runs
their components through one start/stop list
(`vivified.core.lifecycle.Components`): started in order, stopped in reverse,
and stopped again in reverse when a later one fails to start.

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
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import Message

from vivified.core.areas import Areas
from vivified.core.audit import (
    Audit,
    AuditRecord,
    TailCheck,
)
from vivified.core.ca import CAConfig, CertificateAuthority, CoreTLS, new_private_key, write_private_key
from vivified.core.chain import (
    AuditRecorder,
)
from vivified.core.clock import Clock, SystemClock
from vivified.core.config import CoreConfig
from vivified.core.data_dir import run_file
from vivified.core.db import create_engine_for, sqlite_url, unavailable
from vivified.core.egress import EgressService
from vivified.core.errors import Unavailable
from vivified.core.events import EventBus
from vivified.core.gateway import PolicySet
from vivified.core.identity import EMERGENCY_TRAITS, Activation
from vivified.core.lifecycle import Components, Hooks
from vivified.core.metrics import Metrics
from vivified.core.policy import Rule, load_default_rules, rules_sha256
from vivified.core.registry import CoreIdentity, PluginRecord, PluginStore
from vivified.core.server import CoreServer, check_cipher_suites
from vivified.core.settings import (
    LiveSettings,
    Override,
    OverrideStore,
    apply_overrides,
    read_overrides,
)
from vivified.core.telemetry import Tracing, tracing_from_env
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
    plugin_socket_dir: str = ""
    """Where the core also serves its ports as Unix sockets for sandboxed plugins ("" when it does not)."""


def _with_port(address: str, port: int) -> str:
    return f"{address.rpartition(':')[0]}:{port}"


def _pem_key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class _MetricsEndpoint:
    """/metrics as a component; `port` is the bound port once started."""

    def __init__(self, metrics: Metrics, address: str) -> None:
        self._metrics = metrics
        self._address = address
        self.port = 0

    async def start(self) -> None:
        self.port = self._metrics.serve(self._address)

    async def stop(self) -> None:
        self._metrics.stop()


class Core:
    """One core broker process."""

    def __init__(self, config: CoreConfig, *, clock: Clock | None = None, tracing: Tracing | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        # OTLP trace export when the standard OTEL_* variables configure it; else off.
        self.tracing = tracing or tracing_from_env(os.environ)
        self.running: RunningCore | None = None
        self.components = Components()
        """What runs, in start order; `stop()` stops it in reverse."""
        self._grace = 3.0
        self._server: CoreServer | None = None
        self._audit: Audit | None = None
        self._events: EventBus | None = None
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
                (directory / "ca.crt").write_bytes(ca.trust_bundle_pem)
                return None
        key = new_private_key()
        issued = ca.issue_operator_certificate("admin", key)
        key_path = directory / "operator.key"
        key_path.unlink(missing_ok=True)
        write_private_key(key_path, key)
        cert_path.write_bytes(issued.chain_pem)
        (directory / "ca.crt").write_bytes(ca.trust_bundle_pem)
        return issued.serial, int(issued.not_after.timestamp())

    def _open_settings(self, engine: sa.Engine) -> tuple[CoreConfig, OverrideStore, LiveSettings]:
        """The top layer of the settings hierarchy: runtime overrides stored by
        administrators, applied before any component reads the config; while
        the core runs, LiveSettings applies later changes."""
        base = self.config
        try:
            overrides = apply_overrides(base, read_overrides(engine))
        except sa.exc.DBAPIError as exc:
            raise unavailable(exc, engine.url) from None
        config = self.config = overrides.config
        for key, problem in overrides.refused.items():
            _log.error("runtime override of %s not applied: %s", key, problem)
        store = OverrideStore(engine, self.clock)
        self.settings = LiveSettings(base, store, overrides, interval=config.settings_refresh_seconds)
        return config, store, self.settings

    async def _audit_opened(self, audit: Audit, overrides: Mapping[str, Override], rules: Sequence[Rule]) -> None:
        """The first records of a run: a tampered tail accepted (if it was),
        `core.start`, and the policy loaded."""
        check = audit.check
        if check is None:
            raise RuntimeError("the audit log has not started")
        detail = {"pid": str(os.getpid()), "overrides": ",".join(f"{k}={o.value}" for k, o in overrides.items())}
        if check.tampered:
            await audit.log.append(self._tampering_accepted(check))
        elif check.unanchored is not None:
            first, last = check.unanchored
            detail |= {"unanchored_from": str(first), "unanchored_to": str(last)}
            _log.warning("audit records %d..%d had no checkpoint (crash); their chain verified", first, last)
        await audit.log.append(
            AuditRecord(actor="core:core", action="core.start", resource=self.config.profile, detail=detail)
        )
        policy_file = self.config.policy_file
        await audit.log.append(
            AuditRecord(
                actor="core:core",
                action="policy.load",
                resource=str(policy_file) if policy_file is not None else "packaged",
                detail={
                    "rules": str(len(rules)),
                    "sha256": rules_sha256(rules),
                    "report_only": ",".join(
                        f"{r.id}@{r.report_only_since.isoformat()}" for r in rules if r.report_only_since is not None
                    ),
                },
            )
        )

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

    async def _load_plugins(self, store: PluginStore, policy: PolicySet) -> None:
        """Load the registry's store; the policy's manifest-derived rules and
        the plugin metrics follow each plugin's status and health from then on."""
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

    async def _issue_operator_identity(
        self,
        ca: CertificateAuthority,
        store: PluginStore,
        audit: Audit,
        is_revoked: Callable[[int], bool] | None = None,
    ) -> None:
        """Write the local operator identity (again after a CA switch), recording
        and auditing a newly issued certificate."""
        operator_cert = self._write_operator_identity(ca, is_revoked or store.is_revoked_serial)
        if operator_cert is not None:
            await store.record_certificate("operator/admin", *operator_cert)  # listable, revocable
            await audit.log.append(
                AuditRecord(
                    actor="core:core",
                    action="certificate.issue",
                    resource="operator/admin",
                    detail={"serial": format(operator_cert[0], "x")},
                )
            )

    async def _reissue_operator_identity(
        self, ca: CertificateAuthority, store: PluginStore, audit: Audit, switched: bool
    ) -> None:
        """After a CA trust change: a new operator certificate when the issuing CA switched."""
        await self._issue_operator_identity(ca, store, audit, (lambda _serial: True) if switched else None)

    def _load_policy(self) -> tuple[Sequence[Rule], PolicySet]:
        rules = load_default_rules(self.config.policy_file)
        for rule in rules:
            if rule.report_only_since is not None:
                _log.warning(
                    "policy rule %s is report-only since %s: audited, not enforced",
                    rule.id,
                    rule.report_only_since.isoformat(),
                )
        return rules, PolicySet(rules, on_report_only=self.metrics.on_report_only)

    async def _announce_break_glass(self, activation: Activation) -> None:
        """A break-glass activation: a critical audit record, then a SecurityAlert
        on the bus (the reason stays in the audit log). Either failing fails
        the call that asked for it."""
        if self._audit is None or self._events is None:
            raise Unavailable("the core is not ready for break-glass", reason="CORE_STARTING")
        until = dt.datetime.fromtimestamp(activation.expires_at, dt.UTC).isoformat()
        details = {"activation_id": activation.activation_id, "user_id": activation.user_id, "expires_at": until}
        await self._audit.log.append(
            AuditRecord(
                actor=f"user:{activation.user_id}",
                action="identity.break_glass.activate",
                resource=f"user/{activation.user_id}",
                decision="allow",
                reason="BREAK_GLASS_ACTIVATED",
                rule_id="break-glass",
                detail={
                    **details,
                    "severity": "critical",
                    "reason": activation.reason,
                    "traits": ",".join(sorted(EMERGENCY_TRAITS)),
                },
            )
        )
        _log.warning(
            "break-glass activated by user %s until %s (%s)", activation.user_id, until, activation.activation_id
        )
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
        """Start the components in order (see `_compose`). If one fails, the
        ones started before it are stopped, in reverse, and its error raised:
        a failed start leaves no port bound, store open or task running."""
        try:
            return await self._compose(self.components)
        except BaseException:
            await self.components.unwind()
            raise

    async def _compose(self, parts: Components) -> RunningCore:
        """Build each area (`Areas`: its package's `build_*`) and start it
        where its place in this list is; `parts` records what started."""
        engine = self._open_database()
        await parts.start("database", Hooks(on_stop=engine.dispose))
        config, override_store, live = self._open_settings(engine)
        areas = Areas.open(config, self.clock, engine, live, self.metrics, self.tracing)
        rules, policy = self._load_policy()
        ca, core_identity, tls = self._core_certificate()
        audit = self._audit = areas.audit(on_failure=self._audit_failure_hook(asyncio.get_running_loop()))
        await parts.start("audit log", audit)
        await self._audit_opened(audit, live.applied.overrides, rules)
        registry = areas.registry(
            ca=ca, core_identity=core_identity, audit=audit, on_alert=self._publish_alert, core_endpoint=self._endpoint
        )
        store = registry.store
        await parts.start("plugin store", Hooks(on_start=lambda: self._load_plugins(store, policy)))
        await self._issue_operator_identity(ca, store, audit)
        identity = areas.identity(
            policy=policy, announce_break_glass=self._announce_break_glass, publish=self._publish_core_event
        )
        plugin_config = areas.plugin_config(registry=registry, override_store=override_store)
        recorder = AuditRecorder(audit.log)
        chain = areas.chain(registry=registry, credentials=identity.principal, policy=policy, recorder=recorder)
        gateway = areas.gateway(policy=policy, registry=registry, identity=identity)
        egress = areas.egress(registry=registry, plugin_config=plugin_config)
        object_store = areas.object_store(registry=registry, plugin_config=plugin_config, identity=identity)
        events = self._events = areas.events(registry=registry, audit=audit, recorder=recorder)
        await self._start_events(parts, events)
        services = areas.services(
            registry=registry,
            gateway=gateway,
            egress=egress,
            object_store=object_store,
            events=events,
            identity=identity,
            plugin_config=plugin_config,
            recorder=recorder,
        )
        server = self._server = areas.server(
            chain=chain, services=services, gateway=gateway, tls=tls, grace=lambda: self._grace
        )
        ca_rotation = areas.ca_rotation(
            ca=ca,
            tls=tls,
            registry=registry,
            core_identity=core_identity,
            audit=audit,
            reissue_operator=lambda switched: self._reissue_operator_identity(ca, store, audit, switched),
            publish_alert=self._publish_alert,
        )
        await parts.start("plugin connections", Hooks(on_stop=registry.connector.close))
        # Read the registry once more right before serving: start-up after the first
        # load can take longer than the sync bound, and calls would then be refused stale.
        await store.sync()
        await parts.start("gRPC server", server)
        metrics = _MetricsEndpoint(self.metrics, config.metrics_address)
        await parts.start("metrics endpoint", metrics)
        await parts.start("health monitor", Hooks(registry.monitor.start, registry.monitor.stop))
        await parts.start("registry sync", Hooks(registry.sync.start, registry.sync.stop))
        await parts.start("CA rotation", Hooks(ca_rotation.start, ca_rotation.stop))
        await parts.start("config follower", plugin_config)
        await parts.start("runtime settings", Hooks(live.start, live.stop))
        return self._serving(server, metrics, egress)

    def _open_database(self) -> sa.Engine:
        """The data dir (mode 0700) and the core's database; refuses a weakened cipher list first."""
        config = self.config
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_cipher_suites(os.environ.get("GRPC_SSL_CIPHER_SUITES"))
        return create_engine_for(config.database_url or sqlite_url(config.data_dir / "vivified.db"))

    def _core_certificate(self) -> tuple[CertificateAuthority, CoreIdentity, CoreTLS]:
        """The CA, and a new key and certificate for this run of the core: as the
        registry hands it to plugins (`CoreIdentity`) and as the server presents it."""
        ca = self._load_ca()
        core_key = new_private_key()
        core_cert = ca.issue_core_certificate(core_key)
        self.metrics.on_certificates(core_cert.chain_pem, ca.root_pem)
        key_pem = _pem_key(core_key)
        identity = CoreIdentity(ca.trust_bundle_pem, core_cert.chain_pem, key_pem, self.config.trust_domain)
        return ca, identity, CoreTLS(key_pem, core_cert.chain_pem, ca.trust_bundle_pem)

    def _endpoint(self) -> str:
        """The mTLS address plugins are told to call back on ("" before the core serves)."""
        return self.running.listen_address if self.running is not None else ""

    async def _start_events(self, parts: Components, events: EventBus) -> None:
        """Start the event bus, then publish the alert of a tampered audit tail accepted at start."""
        try:
            await parts.start("event bus", events)
        except Unavailable as exc:
            raise Unavailable(f"event store: {exc.message}", reason=exc.reason) from None
        if self._audit_alert is not None:
            await events.publish_core_event(f"alert-{self._audit_alert.alert_id}", self._audit_alert)

    def _serving(self, server: CoreServer, metrics: _MetricsEndpoint, egress: EgressService) -> RunningCore:
        """Where the started core listens: told to the egress proxy (its own
        addresses are never fetched) and written to the run file."""
        config = self.config
        mtls_port, bootstrap_port = server.bound[:2]
        self.running = RunningCore(
            pid=os.getpid(),
            listen_address=_with_port(config.listen_address, mtls_port),
            bootstrap_address=_with_port(config.bootstrap_address, bootstrap_port),
            metrics_address=_with_port(config.metrics_address, metrics.port),
            trust_domain=config.trust_domain,
            plugin_socket_dir=str(config.plugin_socket_dir.resolve()) if config.plugin_socket_dir else "",
        )
        egress.listening_on([self.running.listen_address, self.running.bootstrap_address, self.running.metrics_address])
        self._write_run_file(self.running)
        _log.info("core listening: mTLS %s, bootstrap %s", self.running.listen_address, self.running.bootstrap_address)
        return self.running

    async def _publish_core_event(self, payload: Message) -> None:
        """The core's own events (identity's UserCreated/UserUpdated) go through the event bus."""
        if self._events is None:
            raise Unavailable(
                "the event bus is not running", reason="EVENT_STORE_UNAVAILABLE", domain="vivified.events"
            )
        await self._events.publish_core(payload)

    def _write_run_file(self, running: RunningCore) -> None:
        path = run_file(self.config.data_dir)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(running.__dict__))
        tmp.replace(path)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.server.wait_for_termination()

    async def stop(self, grace: float = 3.0) -> None:
        """Stop the components in reverse start order (the server finishing
        in-flight calls within `grace` seconds, the audit log writing its
        final checkpoint), then remove the run file."""
        self._grace = grace
        try:
            await self.components.stop()
        finally:
            self.tracing.shutdown()
            run_file(self.config.data_dir).unlink(missing_ok=True)
