"""Transport security of a real core process (docs/security.md A1–A4, A7, J1, C1):
who may complete a TLS handshake with which port, what the handshake refuses,
how much a request may weigh, and that identity comes from the verified
certificate only — never from request metadata."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import socket
import ssl
import warnings
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.clients import (
    PluginIdentity,
    admitted_plugin,
    audit_rows,
    bootstrap_channel,
    error_info,
    new_csr,
    operator_channel,
    plugin_channel,
    target_override,
)
from support.processes import CoreProcess, clean_env, start_core, stop_process
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.core.ca import CAConfig, CertificateAuthority
from vivified.core.clock import ManualClock
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

LIST_PLUGINS = "/vivified.admin.v1.PluginAdminService/ListPlugins"
GET_MY_CONFIG = "/vivified.config.v1.ConfigService/GetMyConfig"
REGISTER = "/vivified.registry.v1.PluginRegistryService/Register"
HEARTBEAT = "/vivified.registry.v1.PluginRegistryService/Heartbeat"
OPERATOR = "operator:admin"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
TLS_ALERT, TLS_HANDSHAKE, SERVER_HELLO = 0x15, 0x16, 0x02
MIB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _last_seq(core: CoreProcess) -> int:
    rows = audit_rows(core)
    return int(rows[-1].seq) if rows else 0


async def _assert_nothing_audited_since(core: CoreProcess, seq: int) -> None:
    """A refused connection must leave no audit row. An operator call commits
    exactly one row before it is answered, so if the refused attempt had
    reached the interceptor chain its row would show up before this one."""
    async with operator_channel(core) as channel:
        await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
    new = [(r.actor, r.action) for r in audit_rows(core) if r.seq > seq]
    assert new == [(OPERATOR, LIST_PLUGINS)], f"unexpected audit rows after a refused connection: {new}"


async def _health_error(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return caught.value


async def _heartbeat_error(core: CoreProcess, chain_pem: bytes, key_pem: bytes) -> grpc.aio.AioRpcError:
    creds = grpc.ssl_channel_credentials(core.ca_pem, key_pem, chain_pem)
    async with grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reg_grpc.PluginRegistryServiceStub(channel).Heartbeat(reg_pb.HeartbeatRequest(), timeout=10)
    return caught.value


def _raw_exchange(address: str, payload: bytes, limit: int = 4096) -> bytes:
    """Send bytes on a fresh TCP connection; return whatever comes back before
    the server closes the connection (or goes quiet for 5 s)."""
    received = b""
    with socket.create_connection(_host_port(address), timeout=5) as sock:
        sock.sendall(payload)
        try:
            while len(received) < limit:
                chunk = sock.recv(limit)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def _pem(obj: Any) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)  # type: ignore[no-any-return]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca_extensions(builder: x509.CertificateBuilder, path_length: int) -> x509.CertificateBuilder:
    return builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True).add_extension(
        x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    signer: ec.EllipticCurvePrivateKey,
    extend: Callable[[x509.CertificateBuilder], x509.CertificateBuilder],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
    )
    return extend(builder).sign(signer, hashes.SHA256())


def _foreign_plugin_chain(core: CoreProcess, copy_of: PluginIdentity) -> tuple[bytes, bytes]:
    """(chain_pem, key_pem) from a self-made two-level CA whose root and issuing
    subjects copy the core's, issuing a leaf whose subject and SANs copy a real
    plugin's certificate. Only the signatures differ."""
    real_root = x509.load_pem_x509_certificate(core.ca_pem)
    real_issuing = x509.load_pem_x509_certificate((core.data_dir / "ca" / "issuing.crt").read_bytes())
    real_leaf = copy_of.leaf
    root_key, issuing_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert(real_root.subject, real_root.subject, root_key.public_key(), root_key, lambda b: _ca_extensions(b, 1))
    issuing = _cert(
        real_issuing.subject, real_root.subject, issuing_key.public_key(), root_key, lambda b: _ca_extensions(b, 0)
    )
    san = real_leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    leaf = _cert(
        real_leaf.subject,
        real_issuing.subject,
        leaf_key.public_key(),
        issuing_key,
        lambda b: (
            b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
        ),
    )
    assert root.subject == real_root.subject and issuing.subject == real_issuing.subject
    return _pem(leaf) + _pem(issuing), _key_pem(leaf_key)


def _self_signed_plugin_cert(copy_of: PluginIdentity) -> tuple[bytes, bytes]:
    """A self-signed leaf with the real plugin's subject and SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    real = copy_of.leaf
    san = real.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    cert = _cert(
        real.subject,
        real.subject,
        key.public_key(),
        key,
        lambda b: b.add_extension(x509.SubjectAlternativeName(list(san)), critical=False),
    )
    return _pem(cert), _key_pem(key)


def _core_ca(core: CoreProcess, clock: ManualClock, **config: Any) -> CertificateAuthority:
    """The running core's own CA, loaded from its data dir with a test clock."""
    return CertificateAuthority.load_or_create(
        core.data_dir / "ca", CAConfig(trust_domain=core.trust_domain, **config), clock
    )


def _mint_plugin_cert(ca: CertificateAuthority, plugin_id: str) -> tuple[x509.Certificate, bytes, bytes]:
    csr_pem, key_pem = new_csr(plugin_id)
    issued = ca.issue_plugin_certificate(plugin_id, csr_pem)
    return x509.load_pem_x509_certificate(issued.cert_pem), issued.chain_pem, key_pem


# --- A1: plaintext ---------------------------------------------------------------------------------


async def _assert_plaintext_refused(core: CoreProcess, address: str, method: str, request: Any) -> None:
    seq = _last_seq(core)
    async with grpc.aio.insecure_channel(address) as channel:
        assert (await _health_error(channel)).code() == grpc.StatusCode.UNAVAILABLE
        call = channel.unary_unary(method, request_serializer=type(request).SerializeToString)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # Raw HTTP/2 (the prior-knowledge preface plus an empty SETTINGS frame): a
    # gRPC server speaking h2c would answer with its own SETTINGS frame.
    reply = _raw_exchange(address, H2_PREFACE + EMPTY_SETTINGS_FRAME)
    assert reply == b"" or reply[0] == TLS_ALERT, f"plaintext HTTP/2 got an answer: {reply[:32]!r}"
    await _assert_nothing_audited_since(core, seq)


async def test_a1_plaintext_to_mtls_port_fails(core: CoreProcess) -> None:
    await _assert_plaintext_refused(core, core.listen_address, LIST_PLUGINS, admin_pb.ListPluginsRequest())


async def test_a1_plaintext_to_bootstrap_port_fails(core: CoreProcess) -> None:
    await _assert_plaintext_refused(core, core.bootstrap_address, REGISTER, reg_pb.RegisterRequest())


# --- A2: TLS without a client certificate ------------------------------------------------------------


async def test_a2_tls_without_client_cert_rejected(core: CoreProcess) -> None:
    seq = _last_seq(core)
    server_auth_only = grpc.ssl_channel_credentials(core.ca_pem)
    async with grpc.aio.secure_channel(core.listen_address, server_auth_only, options=target_override(core)) as channel:
        assert (await _health_error(channel)).code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await _assert_nothing_audited_since(core, seq)
    # The same credentials are good enough for the bootstrap port, so what the
    # mTLS port refused was the missing client certificate, not the channel.
    async with bootstrap_channel(core) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- A3: a foreign CA copying a real identity ----------------------------------------------------------


async def test_a3_foreign_ca_cert_with_copied_san_rejected(core: CoreProcess) -> None:
    victim = await admitted_plugin(core, "a3-victim")
    async with plugin_channel(core, victim) as channel:
        await reg_grpc.PluginRegistryServiceStub(channel).Heartbeat(reg_pb.HeartbeatRequest(), timeout=10)
    seq = _last_seq(core)
    for chain_pem, key_pem in (_foreign_plugin_chain(core, victim), _self_signed_plugin_cert(victim)):
        forged = x509.load_pem_x509_certificate(chain_pem)
        san = forged.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://vivified.local/plugin/a3-victim"]
        assert san.get_values_for_type(x509.DNSName) == ["a3-victim.plugin.vivified.local"]
        err = await _heartbeat_error(core, chain_pem, key_pem)
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    await _assert_nothing_audited_since(core, seq)


# --- SVID leaf rules: a leaf the core's own CA signed, but no X.509-SVID leaf -----------------------


def _leaf_usage(**on: bool) -> x509.KeyUsage:
    fields = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(fields | on))


SVID_VIOLATIONS: dict[str, tuple[bool, x509.KeyUsage, list[x509.ObjectIdentifier]]] = {
    # (CA flag, key usage, extended key usages)
    "ca_true_key_cert_sign": (
        True,
        _leaf_usage(digital_signature=True, key_cert_sign=True),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    ),
    "key_cert_sign": (
        False,
        _leaf_usage(digital_signature=True, key_cert_sign=True),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    ),
    "crl_sign": (False, _leaf_usage(digital_signature=True, crl_sign=True), [ExtendedKeyUsageOID.CLIENT_AUTH]),
    "no_digital_signature": (False, _leaf_usage(key_agreement=True), [ExtendedKeyUsageOID.CLIENT_AUTH]),
    "server_auth_only": (False, _leaf_usage(digital_signature=True), [ExtendedKeyUsageOID.SERVER_AUTH]),
    "code_signing_only": (False, _leaf_usage(digital_signature=True), [ExtendedKeyUsageOID.CODE_SIGNING]),
}


SVID_HANDSHAKE_REFUSED = {"no_digital_signature", "server_auth_only", "code_signing_only"}
SVID_VIOLATION_WORDS = {"ca_true_key_cert_sign": "CA:true", "key_cert_sign": "keyCertSign", "crl_sign": "cRLSign"}


def _svid_violating_leaf(
    core: CoreProcess, copy_of: PluginIdentity, ca: bool, usage: x509.KeyUsage, extended: list[x509.ObjectIdentifier]
) -> tuple[bytes, bytes]:
    """(chain_pem, key_pem): a leaf signed with the core's own issuing key (test
    only: reading the key from the data dir) with the real plugin's subject and
    SANs, differing from a genuine leaf only in `ca`, `usage` and `extended`."""
    issuing_pem = (core.data_dir / "ca" / "issuing.crt").read_bytes()
    issuing = x509.load_pem_x509_certificate(issuing_pem)
    issuing_key = serialization.load_pem_private_key((core.data_dir / "ca" / "issuing.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    san = copy_of.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    leaf = _cert(
        copy_of.leaf.subject,
        issuing.subject,
        key.public_key(),
        issuing_key,  # type: ignore[arg-type]
        lambda b: (
            b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage(extended), critical=False)
            .add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
        ),
    )
    return _pem(leaf) + issuing_pem, _key_pem(key)


async def test_svid_leaf_rules_refuse_ca_signed_leaves_that_are_no_svid(core: CoreProcess) -> None:
    victim = await admitted_plugin(core, "svid-victim")
    # Control: the same recipe with the genuine extensions is accepted, so each
    # refusal below is about the one extension that differs.
    good_chain, good_key = _svid_violating_leaf(
        core, victim, False, _leaf_usage(digital_signature=True), [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    creds = grpc.ssl_channel_credentials(core.ca_pem, good_key, good_chain)
    async with grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core)) as channel:
        await reg_grpc.PluginRegistryServiceStub(channel).Heartbeat(reg_pb.HeartbeatRequest(), timeout=10)
    for label, (ca, usage, extended) in SVID_VIOLATIONS.items():
        seq = _last_seq(core)
        chain_pem, key_pem = _svid_violating_leaf(core, victim, ca, usage, extended)
        err = await _heartbeat_error(core, chain_pem, key_pem)
        if label in SVID_HANDSHAKE_REFUSED:
            # gRPC's TLS stack will not complete a handshake with this leaf at
            # all: nothing reaches the chain (the chain's check is the unit test's).
            assert err.code() == grpc.StatusCode.UNAVAILABLE, f"{label}: {err.code()} {err.details()}"
            await _assert_nothing_audited_since(core, seq)
            continue
        # Chains to the CA and passes the handshake: the core refuses it.
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, f"{label}: {err.code()} {err.details()}"
        info = error_info(err)
        assert (info.reason, info.domain) == ("IDENTITY_INVALID", "vivified.auth"), label
        assert SVID_VIOLATION_WORDS[label] in err.details(), err.details()
        rows = [r for r in audit_rows(core) if r.seq > seq]
        assert [(r.action, r.decision, r.reason) for r in rows] == [(HEARTBEAT, "deny", "IDENTITY_INVALID")], label


# --- A4: expired and not-yet-valid certificates ---------------------------------------------------------


async def test_a4_expired_and_not_yet_valid_certs_rejected(core: CoreProcess) -> None:
    await admitted_plugin(core, "a4-plugin")
    now = dt.datetime.now(dt.UTC)
    issuing = x509.load_pem_x509_certificate((core.data_dir / "ca" / "issuing.crt").read_bytes())

    # The core's CA as it was shortly after it was created: a 10 s leaf from
    # then expired minutes ago.
    past = _core_ca(
        core,
        ManualClock(start=issuing.not_valid_before_utc + dt.timedelta(seconds=30)),
        leaf_ttl=dt.timedelta(seconds=10),
    )
    expired, expired_chain, expired_key = _mint_plugin_cert(past, "a4-plugin")
    assert expired.not_valid_after_utc < now - dt.timedelta(minutes=1)

    future = _core_ca(core, ManualClock(start=now + dt.timedelta(hours=1)), clock_skew=dt.timedelta(0))
    early, early_chain, early_key = _mint_plugin_cert(future, "a4-plugin")
    assert early.not_valid_before_utc > now + dt.timedelta(minutes=59)

    # Control: the same CA and recipe with the real time gives a working cert,
    # so the two refusals below are about the validity window alone.
    current = _core_ca(core, ManualClock(start=now))
    _, good_chain, good_key = _mint_plugin_cert(current, "a4-plugin")
    creds = grpc.ssl_channel_credentials(core.ca_pem, good_key, good_chain)
    async with grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core)) as channel:
        await reg_grpc.PluginRegistryServiceStub(channel).Heartbeat(reg_pb.HeartbeatRequest(), timeout=10)

    seq = _last_seq(core)
    for label, chain_pem, key_pem in (
        ("expired", expired_chain, expired_key),
        ("not yet valid", early_chain, early_key),
    ):
        err = await _heartbeat_error(core, chain_pem, key_pem)
        assert err.code() == grpc.StatusCode.UNAVAILABLE, f"{label} certificate: {err.code()} {err.details()}"
    await _assert_nothing_audited_since(core, seq)


# --- A7: protocol versions and cipher suites --------------------------------------------------------------


def _tls_context(core: CoreProcess, version: ssl.TLSVersion, ciphers: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=core.ca_pem.decode())
    ctx.load_cert_chain(core.operator_dir / "operator.crt", core.operator_dir / "operator.key")
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; offering them is the point of this test.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _tls_session(core: CoreProcess, ctx: ssl.SSLContext) -> tuple[str | None, str | None, bytes]:
    """Handshake, then speak HTTP/2: returns (version, alpn, first server bytes)."""
    with (
        socket.create_connection(_host_port(core.listen_address), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=f"core.{core.trust_domain}") as tls,
    ):
        tls.sendall(H2_PREFACE + EMPTY_SETTINGS_FRAME)
        return tls.version(), tls.selected_alpn_protocol(), tls.recv(64)


# Errors OpenSSL raises before it sends anything: the local library refused.
_CLIENT_SIDE = {
    "NO_PROTOCOLS_AVAILABLE",
    "NO_CIPHERS_AVAILABLE",
    "NO_CIPHER_MATCH",
    "UNSUPPORTED_PROTOCOL",
    "NO_SUITABLE_SIGNATURE_ALGORITHM",
}


def _refusing_side(core: CoreProcess, ctx: ssl.SSLContext) -> str:
    """Which side refused the handshake: 'client' (local OpenSSL would not
    offer it) or 'server'. Fails if the handshake succeeds."""
    try:
        version, _, _ = _tls_session(core, ctx)
    except ssl.SSLError as exc:
        return "client" if exc.reason in _CLIENT_SIDE else "server"
    except (ConnectionError, TimeoutError):
        return "server"
    raise AssertionError(f"the core completed a {version} handshake it must refuse")


def _client_hello(version: int, suites: list[int]) -> bytes:
    """A minimal ClientHello record, built by hand so the offer does not depend
    on what the local TLS library is willing to send."""

    def vec(data: bytes, size: int) -> bytes:
        return len(data).to_bytes(size, "big") + data

    def ext(kind: int, data: bytes) -> bytes:
        return kind.to_bytes(2, "big") + vec(data, 2)

    extensions = b"".join(
        [
            ext(0x000A, vec(b"\x00\x17\x00\x18", 2)),  # supported_groups: P-256, P-384
            ext(0x000B, vec(b"\x00", 1)),  # ec_point_formats: uncompressed
            ext(0x000D, vec(b"\x04\x03\x08\x04\x04\x01\x05\x03", 2)),  # signature_algorithms
            ext(0x0010, vec(vec(b"h2", 1), 2)),  # ALPN
        ]
    )
    body = (
        version.to_bytes(2, "big")
        + os.urandom(32)
        + vec(b"", 1)  # session id
        + vec(b"".join(s.to_bytes(2, "big") for s in suites), 2)
        + vec(b"\x00", 1)  # compression: null
        + vec(extensions, 2)
    )
    handshake = bytes([0x01]) + len(body).to_bytes(3, "big") + body
    return bytes([TLS_HANDSHAKE, 0x03, 0x01]) + vec(handshake, 2)


def _server_hello(core: CoreProcess, version: int, suites: list[int]) -> bool:
    reply = _raw_exchange(core.listen_address, _client_hello(version, suites), limit=6)
    return len(reply) >= 6 and reply[0] == TLS_HANDSHAKE and reply[5] == SERVER_HELLO


CBC_SUITES = [0xC009, 0xC00A, 0xC013, 0xC014, 0xC023, 0xC027, 0x002F, 0x0035]  # ECDHE/RSA with AES-CBC
AEAD_SUITES = [0xC02B, 0xC02C, 0xCCA9, 0xC02F, 0xC030]  # ECDHE with AES-GCM / ChaCha20-Poly1305
TLS10, TLS11, TLS12 = 0x0301, 0x0302, 0x0303


async def test_a7_tls_versions_and_ciphers(core: CoreProcess, record_property: Callable[[str, object], None]) -> None:
    # The hand-built hello must work at all, or its refusals below prove nothing.
    assert _server_hello(core, TLS12, AEAD_SUITES), "a TLS 1.2 AEAD ClientHello got no ServerHello"

    for name, version, wire in (("TLSv1.0", ssl.TLSVersion.TLSv1, TLS10), ("TLSv1.1", ssl.TLSVersion.TLSv1_1, TLS11)):
        side = _refusing_side(core, _tls_context(core, version, "DEFAULT:@SECLEVEL=0"))
        record_property(f"{name} refused by", side)
        # Whichever side refused above, the server itself must refuse the offer.
        assert not _server_hello(core, wire, CBC_SUITES + AEAD_SUITES), f"the core answered a {name} ClientHello"

    cbc_only = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:@SECLEVEL=0"
    side = _refusing_side(core, _tls_context(core, ssl.TLSVersion.TLSv1_2, cbc_only))
    record_property("TLSv1.2 CBC-only refused by", side)
    assert not _server_hello(core, TLS12, CBC_SUITES), "the core chose a CBC suite for TLS 1.2"

    for expected, version in (("TLSv1.2", ssl.TLSVersion.TLSv1_2), ("TLSv1.3", ssl.TLSVersion.TLSv1_3)):
        negotiated, alpn, first = _tls_session(core, _tls_context(core, version, None))
        assert (negotiated, alpn) == (expected, "h2")
        # The server's first HTTP/2 frame is its SETTINGS frame (type 4): the
        # server accepted the operator certificate and speaks gRPC's transport.
        assert len(first) >= 9 and first[3] == 0x04, f"{expected}: no HTTP/2 SETTINGS from the core: {first!r}"


async def test_a7_inherited_cipher_variable_cannot_enable_cbc(tmp_path: pathlib.Path) -> None:
    """gRPC reads its cipher list from GRPC_SSL_CIPHER_SUITES. A value inherited
    from the environment (a shell profile, a container image) must not switch
    CBC suites back on: the core either refuses to start or keeps AEAD only."""
    env = clean_env(GRPC_SSL_CIPHER_SUITES="ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256")
    try:
        core = start_core(tmp_path / "data", env=env)
    except RuntimeError as refused:
        assert "GRPC_SSL_CIPHER_SUITES" in str(refused), f"the core refused to start, but not saying why:\n{refused}"
        return
    try:
        assert _server_hello(core, TLS12, AEAD_SUITES), "a TLS 1.2 AEAD ClientHello got no ServerHello"
        assert not _server_hello(core, TLS12, CBC_SUITES), (
            "GRPC_SSL_CIPHER_SUITES from the environment made the core accept a CBC suite"
        )
    finally:
        stop_process(core.process)


# --- J1: message size and decompression bombs -----------------------------------------------------------


def _proc_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


async def _assert_serving(core: CoreProcess) -> None:
    assert core.process.poll() is None, f"core exited:\n{core.log()}"
    async with bootstrap_channel(core) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_j1_oversized_message_rejected(core: CoreProcess) -> None:
    request = reg_pb.RegisterRequest(csr_pem="A" * (5 * MIB + 1), join_token="x", endpoint="127.0.0.1:1")
    async with bootstrap_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reg_grpc.PluginRegistryServiceStub(channel).Register(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    await _assert_serving(core)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def test_j1_gzip_bomb_rejected(core: CoreProcess) -> None:
    pid = core.process.pid
    peak_before = _proc_status_kib(pid, "VmHWM")
    # RegisterRequest.csr_pem (field 2, length-delimited) holding 200 MiB of
    # NULs, serialised by hand to spare the test a second 200 MiB copy. Gzip
    # shrinks it to a few hundred KiB, well under the 4 MiB wire limit.
    size = 200 * MIB
    bomb = b"\x12" + _varint(size) + bytes(size)
    async with bootstrap_channel(core) as channel:
        register = channel.unary_unary(REGISTER, response_deserializer=reg_pb.RegisterResponse.FromString)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await register(bomb, timeout=60, compression=grpc.Compression.Gzip)
    del bomb
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    await _assert_serving(core)
    rss_mib = _proc_status_kib(pid, "VmRSS") / 1024
    peak_growth_mib = (_proc_status_kib(pid, "VmHWM") - peak_before) / 1024
    assert rss_mib < 400, f"core RSS {rss_mib:.0f} MiB after the bomb"
    # Inflating the bomb even halfway would have pushed the peak up by 100 MiB.
    assert peak_growth_mib < 100, f"core peak RSS grew by {peak_growth_mib:.0f} MiB: the bomb was inflated"


# --- identity comes from the certificate, never from metadata (C1) --------------------------------------


async def test_metadata_never_overrides_identity(core: CoreProcess) -> None:
    identity = await admitted_plugin(core, "spoofer")
    actor = "plugin:spoofer"
    spoofed = (
        ("x-vivified-plugin-id", "other"),
        ("x-vivified-actor", OPERATOR),
        ("x-spiffe-id", "spiffe://vivified.local/operator/admin"),
        ("x-forwarded-client-cert", "URI=spiffe://vivified.local/operator/admin"),
        ("authorization", "Bearer x"),
    )
    async with plugin_channel(core, identity) as channel:
        before = _last_seq(core)
        # An audited call (accepted heartbeats are counted, not audited).
        await config_pb2_grpc.ConfigServiceStub(channel).GetMyConfig(
            config_pb2.GetMyConfigRequest(), metadata=spoofed, timeout=10
        )
        rows = [r for r in audit_rows(core) if r.seq > before]
        assert [(r.actor, r.action, r.decision, r.outcome) for r in rows] == [(actor, GET_MY_CONFIG, "allow", "OK")]

        before = _last_seq(core)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                admin_pb.ListPluginsRequest(), metadata=spoofed, timeout=10
            )
    err = caught.value
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err)
    assert (info.reason, info.domain, info.metadata["rule_id"]) == ("POLICY_DENIED", "vivified.policy", "default-deny")
    rows = [r for r in audit_rows(core) if r.seq > before]
    assert [(r.actor, r.action, r.decision, r.reason, r.rule_id, r.outcome) for r in rows] == [
        (actor, LIST_PLUGINS, "deny", "POLICY_DENIED", "default-deny", "PERMISSION_DENIED")
    ]
