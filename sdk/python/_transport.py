"""TLS in both directions, pinned to the core's CA and the core's name.

Client side: every channel to the core trusts only the root in `ca_file` and
verifies the host name `core.<trust-domain>` (`grpc.ssl_target_name_override`),
whatever address it dials, so a plugin certificate from the same CA (DNS SAN
`<id>.plugin.<trust-domain>`) can never pass as the core.

Server side: the plugin's server requires a client certificate from the same
root and takes its own certificate from a `ServerCertificates` store that gRPC
consults before every handshake, so a renewed certificate is presented to new
connections without restarting the server."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Sequence

import grpc
from cryptography import x509

from vivified.sdk._identity import SERVER_AUTH, IssuedCertificate, svid_problem


def core_name(trust_domain: str) -> str:
    """The DNS name the core's server certificate must carry."""
    return f"core.{trust_domain}"


def core_channel_options(trust_domain: str) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", core_name(trust_domain))]


def bootstrap_channel(address: str, root_pem: bytes, trust_domain: str) -> grpc.aio.Channel:
    """Server-authenticated TLS to the core's bootstrap port (no client certificate)."""
    credentials = grpc.ssl_channel_credentials(root_certificates=root_pem)
    return grpc.aio.secure_channel(address, credentials, options=core_channel_options(trust_domain))


async def core_certificate_problem(address: str, root_pem: bytes, trust_domain: str, timeout: float) -> str | None:
    """Why the server at `address` is not a verified core, or None.

    gRPC verifies the chain and the name `core.<trust-domain>` but does not show
    a client the server's certificate, so before the join token is sent this
    makes one TLS handshake of its own (same root, same name, ALPN h2) and holds
    the leaf to the X.509-SVID rules for a server, with the single URI SAN
    `spiffe://<trust-domain>/core`."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    context.set_alpn_protocols(["h2"])
    name = core_name(trust_domain)
    try:
        if address.startswith("unix:"):  # a sandboxed plugin reaches the core over its socket
            connect = asyncio.open_unix_connection(address.removeprefix("unix:"), ssl=context, server_hostname=name)
        else:
            host, _, port = address.rpartition(":")
            connect = asyncio.open_connection(host.strip("[]"), int(port), ssl=context, server_hostname=name)
        _, writer = await asyncio.wait_for(connect, timeout)
    except (OSError, ValueError, TimeoutError) as failed:
        return f"TLS handshake failed: {failed}"
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        # Abort rather than close: a TLS close waits for the server's close_notify,
        # which a gRPC server that saw no HTTP/2 preface may never send.
        writer.transport.abort()
    if not der:
        return "the server presented no certificate"
    leaf = x509.load_der_x509_certificate(der)
    try:
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        uris = []
    if uris != [f"spiffe://{trust_domain}/core"]:
        return f"its certificate names {uris}, not the single URI SAN spiffe://{trust_domain}/core"
    problem = svid_problem(leaf, SERVER_AUTH)
    return f"its certificate is no X.509-SVID server leaf: {problem}" if problem else None


def mtls_channel(
    address: str,
    root_pem: bytes,
    trust_domain: str,
    issued: IssuedCertificate,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """Mutual TLS to the core's main port, presenting the plugin's certificate
    (`interceptors`: the metrics' timing, when on)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root_pem, private_key=issued.key_pem, certificate_chain=issued.chain_pem
    )
    return grpc.aio.secure_channel(
        address, credentials, options=core_channel_options(trust_domain), interceptors=list(interceptors) or None
    )


class ServerCertificates:
    """The certificate the plugin's server presents, swappable at run time.

    gRPC calls `fetch` from its own threads before each TLS handshake; it
    returns a new configuration only when one was installed since the last
    call, so unchanged handshakes reuse gRPC's cached TLS context."""

    def __init__(self, client_root_pem: bytes, issued: IssuedCertificate) -> None:
        self._root = client_root_pem
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._initial = self._config(issued)

    def _config(self, issued: IssuedCertificate) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(issued.key_pem, issued.chain_pem)], self._root)

    def install(self, issued: IssuedCertificate, client_root_pem: bytes | None = None) -> None:
        """Present `issued` to every connection accepted from now on, and
        verify the core's client certificate against `client_root_pem` if given
        (the bundle a renewal brought during a CA rotation)."""
        if client_root_pem is not None:
            self._root = client_root_pem
        config = self._config(issued)
        with self._lock:
            self._pending = config

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            config, self._pending = self._pending, None
        return config

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials requiring a client certificate signed by the core's root."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self.fetch,  # type: ignore[arg-type]  # the stub omits None, which gRPC documents as "no change"
            require_client_authentication=True,
        )
