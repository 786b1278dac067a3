"""The issued certificates work in a real (OpenSSL) mutual-TLS handshake, in memory."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from vivified.core.ca import (
    CAConfig,
    CertificateAuthority,
    IssuedCertificate,
    SigningKey,
    new_private_key,
    write_private_key,
)
from vivified.core.clock import SystemClock


def _csr(key: SigningKey) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _context(
    tmp: Path,
    name: str,
    ca: CertificateAuthority,
    issued: IssuedCertificate,
    key: SigningKey,
    *,
    server: bool,
) -> ssl.SSLContext:
    (tmp / f"{name}.pem").write_bytes(issued.chain_pem)
    write_private_key(tmp / f"{name}.key", key)
    (tmp / f"{name}-root.pem").write_bytes(ca.root_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tmp / f"{name}.pem", tmp / f"{name}.key")
    context.load_verify_locations(tmp / f"{name}-root.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> ssl.SSLObject:
    """Run both ends of a TLS handshake over memory BIOs; return the server's view."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return server
    raise AssertionError("handshake did not finish")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca", CAConfig(), SystemClock())


def test_plugin_client_and_core_server_complete_mutual_tls(ca: CertificateAuthority, tmp_path: Path) -> None:
    core_key, plugin_key = new_private_key(), new_private_key()
    server_ctx = _context(tmp_path, "core", ca, ca.issue_core_certificate(core_key), core_key, server=True)
    plugin = ca.issue_plugin_certificate("email", _csr(plugin_key))
    client_ctx = _context(tmp_path, "plugin", ca, plugin, plugin_key, server=False)
    server = _handshake(server_ctx, client_ctx, "core.vivified.local")
    peer = server.getpeercert()
    assert peer is not None
    assert peer["subjectAltName"] == (
        ("URI", "spiffe://vivified.local/plugin/email"),
        ("DNS", "email.plugin.vivified.local"),
    )


def test_core_client_and_plugin_server_complete_mutual_tls(ca: CertificateAuthority, tmp_path: Path) -> None:
    core_key, plugin_key = new_private_key(), new_private_key()
    plugin = ca.issue_plugin_certificate("email", _csr(plugin_key))
    server_ctx = _context(tmp_path, "plugin", ca, plugin, plugin_key, server=True)
    client_ctx = _context(tmp_path, "core", ca, ca.issue_core_certificate(core_key), core_key, server=False)
    server = _handshake(server_ctx, client_ctx, "email.plugin.vivified.local")
    peer = server.getpeercert()
    assert peer is not None and ("URI", "spiffe://vivified.local/core") in peer["subjectAltName"]


def test_client_from_a_foreign_ca_is_rejected(ca: CertificateAuthority, tmp_path: Path) -> None:
    foreign = CertificateAuthority.load_or_create(tmp_path / "foreign", CAConfig(), SystemClock())
    core_key, plugin_key = new_private_key(), new_private_key()
    server_ctx = _context(tmp_path, "core", ca, ca.issue_core_certificate(core_key), core_key, server=True)
    impostor = foreign.issue_plugin_certificate("email", _csr(plugin_key))
    client_ctx = _context(tmp_path, "impostor", ca, impostor, plugin_key, server=False)
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        _handshake(server_ctx, client_ctx, "core.vivified.local")


def test_core_hostname_mismatch_is_rejected(ca: CertificateAuthority, tmp_path: Path) -> None:
    core_key, plugin_key = new_private_key(), new_private_key()
    server_ctx = _context(tmp_path, "core", ca, ca.issue_core_certificate(core_key), core_key, server=True)
    plugin = ca.issue_plugin_certificate("email", _csr(plugin_key))
    client_ctx = _context(tmp_path, "plugin", ca, plugin, plugin_key, server=False)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(server_ctx, client_ctx, "hr.plugin.vivified.local")
