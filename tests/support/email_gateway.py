"""Helpers for the email gateway tests (tests/plugins/email_gateway): real processes: an SMTP server (aiosmtpd on
loopback, STARTTLS with a test CA, AUTH required), a `vivified core` whose
egress config grants the gateway exactly that server's address, the
`python -m vivified.plugins.email_gateway` process, and an in-process caller
plugin that calls the gateway through the operator lane, publishes events to
it and records the events it publishes."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import pathlib
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.message import Message
from support.clients import approve, operator_channel
from support.lane import RecordingStore, plugin_state, started_plugin, write_manifest
from support.processes import CoreProcess, clean_env, spawn, start_core, stop_process
from support.waiting import until
from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.core.manifest import load_manifest_file
from vivified.events.v1.canonical_pb2 import EmailFailed, EmailQueued, EmailSent
from vivified.sdk import PluginRuntime, ReceivedEvent

GATEWAY = "email-gateway"
COMMUNICATION = "vivified.communication.v1.CommunicationPluginService"
PASSWORD = "CANARY-smtp-password-5d1e9b2f"
USERNAME = "mailer"
SENDER = "platform@vivified.test"
MAX_ATTEMPTS = 3


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str
    tls: bool


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: records messages, refuses listed recipients with a 5xx."""

    messages: list[Received] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos),
                                      envelope.original_content or b"", login, session.ssl is not None))
        return "250 Message accepted"

    def by_id(self, email_id: str) -> list[Received]:
        return [m for m in self.messages if f"X-Vivified-Email-Id: {email_id}".encode() in m.data]


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(), PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _tls(directory: pathlib.Path, *dns_names: str) -> tuple[ssl.SSLContext, str]:
    """A server context for 127.0.0.1 (and `dns_names`) from a fresh CA, and that CA's PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    *(x509.DNSName(n) for n in dns_names)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, ca.public_bytes(serialization.Encoding.PEM).decode()


class SmtpServer:
    """aiosmtpd in its own thread on a fixed loopback port; `stop()` takes it down
    (connections are then refused) and `start()` brings it back on the same port."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.recorder = SmtpRecorder()
        self.context, self.ca_pem = _tls(directory)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, tls_context=self.context, require_starttls=True,
            authenticator=_authenticate, auth_required=True, auth_require_tls=True,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class Observer:
    """The caller plugin's view: events the gateway published, as delivered to it."""

    events: list[tuple[Message, ReceivedEvent]] = field(default_factory=list)

    async def record(self, payload: Message, event: ReceivedEvent) -> None:
        self.events.append((payload, event))

    def of(self, kind: type[Message], email_id: str) -> list[Any]:
        return [p for p, _ in self.events if isinstance(p, kind) and getattr(p, "email_id", "") == email_id]


@dataclass
class GatewayWorld:
    core: CoreProcess
    smtp: SmtpServer
    caller: PluginRuntime
    observer: Observer
    plugin_log: pathlib.Path
    data_dir: pathlib.Path
    tmp: pathlib.Path
    process: Any = None

    async def set_config(self, key: str, value: str) -> None:
        async with operator_channel(self.core) as channel:
            await config_grpc(channel).SetPluginConfigValue(
                config_pb2.SetPluginConfigValueRequest(plugin_id=GATEWAY, key=key, value=value, reason="email test"),
                timeout=10,
            )

    async def start_gateway(self, manifest_path: pathlib.Path | None = None) -> None:
        """Approve and start the gateway process (with the bundled manifest, or an operator's edit of it)."""
        manifest_path = manifest_path or pathlib.Path(
            str(resources.files("vivified.plugins.email_gateway") / "manifest.yaml")
        )
        approval = await approve(self.core, load_manifest_file(manifest_path), replace=True)
        env = clean_env(
            VIVIFIED_MANIFEST=str(manifest_path), VIVIFIED_JOIN_TOKEN=approval.join_token,
            VIVIFIED_CA_FILE=str(self.core.operator_dir / "ca.crt"), VIVIFIED_CORE_ADDRESS=self.core.listen_address,
            VIVIFIED_BOOTSTRAP_ADDRESS=self.core.bootstrap_address, VIVIFIED_TRUST_DOMAIN=self.core.trust_domain,
            VIVIFIED_PLUGIN_DATA_DIR=str(self.data_dir),
        )
        self.process = spawn([sys.executable, "-m", "vivified.plugins.email_gateway"], env, self.plugin_log)

        async def ready() -> bool:
            state = await plugin_state(self.core, GATEWAY)
            if not (state and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
                    and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY):
                return False
            async with operator_channel(self.core) as channel:
                listed = await event_admin_pb2_grpc.EventAdminServiceStub(channel).ListSubscriptions(
                    event_admin_pb2.ListSubscriptionsRequest(), timeout=5
                )
            return any(GATEWAY in s.subscription for s in listed.subscriptions)

        await until(ready, 60, f"{GATEWAY} to start and subscribe:\n{self.plugin_log.read_text(errors='replace')}")

    def stop_gateway(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def config_grpc(channel: Any) -> config_pb2_grpc.ConfigServiceStub:
    return config_pb2_grpc.ConfigServiceStub(channel)


