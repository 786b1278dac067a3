"""Helpers for the email gateway tests (tests/plugins/email_gateway): real processes: an SMTP server (aiosmtpd on
loopback, STARTTLS with a test CA, AUTH required), and a
`vivified.sdk.testing.LocalCore` (a `vivified core` whose egress config grants
the gateway exactly that server's address) running the
`python -m vivified.plugins.email_gateway` process; LocalCore's tester plugin
calls the gateway through the operator lane, publishes events to it and
records the events it publishes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import pathlib
import socket
import ssl
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.message import Message

from support.processes import CoreProcess, core_view
from vivified.config.v1 import config_pb2_grpc
from vivified.sdk.testing import LocalCore, LocalCoreOptions

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

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        self.messages.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                login,
                session.ssl is not None,
            )
        )
        return "250 Message accepted"

    def by_id(self, email_id: str) -> list[Received]:
        return [m for m in self.messages if f"X-Vivified-Email-Id: {email_id}".encode() in m.data]


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _tls(directory: pathlib.Path, *dns_names: str) -> tuple[ssl.SSLContext, str]:
    """A server context for 127.0.0.1 (and `dns_names`) from a fresh CA, and that CA's PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *(x509.DNSName(n) for n in dns_names)]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
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
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=self.context,
            require_starttls=True,
            authenticator=_authenticate,
            auth_required=True,
            auth_require_tls=True,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class _Caller:
    """The LocalCore tester, spoken to like an in-process caller plugin."""

    def __init__(self, local: LocalCore) -> None:
        self._local = local

    async def call(self, plugin_id: str, request: Message, *, timeout: float = 10.0) -> Message:
        assert plugin_id == self._local.plugin_id
        return await self._local.call(request, timeout=timeout)

    async def publish(self, payload: Message) -> object:
        return await self._local.publish(payload)


class _Observer:
    """What the gateway published, as delivered to the LocalCore tester."""

    def __init__(self, local: LocalCore) -> None:
        self._local = local

    def of(self, kind: type[Message], email_id: str) -> list[Any]:
        return [p for p in self._local.events_of(kind) if getattr(p, "email_id", "") == email_id]


@dataclass
class GatewayWorld:
    """The gateway process under a `LocalCore` (core process, tester plugin) and the SMTP server."""

    local: LocalCore
    smtp: SmtpServer

    @property
    def core(self) -> CoreProcess:
        return core_view(self.local)

    @property
    def caller(self) -> _Caller:
        return _Caller(self.local)

    @property
    def observer(self) -> _Observer:
        return _Observer(self.local)

    @property
    def plugin_log(self) -> pathlib.Path:
        return self.local.plugin.log_path

    @property
    def data_dir(self) -> pathlib.Path:
        return self.local.plugin.data_dir

    async def set_config(self, key: str, value: str) -> None:
        await self.local.set_config(key, value)

    async def start_gateway(self) -> None:
        await self.local.plugin.start()

    async def stop_gateway(self) -> None:
        await self.local.plugin.stop()


GATEWAY_COMMAND = (sys.executable, "-m", "vivified.plugins.email_gateway")


def bundled_manifest() -> pathlib.Path:
    return pathlib.Path(str(resources.files("vivified.plugins.email_gateway") / "manifest.yaml"))


def smtp_config(smtp: SmtpServer) -> dict[str, str]:
    """The gateway's config for the test SMTP server (STARTTLS, AUTH)."""
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": str(smtp.port),
        "smtp_sender": SENDER,
        "smtp_username": USERNAME,
        "smtp_password": PASSWORD,
        "smtp_tls": "starttls",
        "smtp_ca_pem": smtp.ca_pem,
        "max_attempts": str(MAX_ATTEMPTS),
        "retry_backoff_ms": "50",
        "smtp_timeout_seconds": "10",
    }


def gateway_core_options(
    directory: pathlib.Path,
    smtp: SmtpServer,
    egress: dict[str, Any] | None = None,
    core_env: dict[str, str] | None = None,
) -> LocalCoreOptions:
    """A core granting email-gateway a tunnel to exactly the SMTP server's address (plus `egress`)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "egress.json"
    path.write_text(
        json.dumps(
            {"tunnel_grants": [{"plugin_id": GATEWAY, "host": "127.0.0.1", "port": smtp.port}], **(egress or {})}
        )
    )
    return LocalCoreOptions(
        extra_flags=(
            "--heartbeat-interval",
            "1",
            "--egress-config",
            str(path),
            "--event-max-attempts",
            str(MAX_ATTEMPTS),
        ),
        core_env=core_env or {},
    )


def config_grpc(channel: Any) -> config_pb2_grpc.ConfigServiceStub:
    return config_pb2_grpc.ConfigServiceStub(channel)
