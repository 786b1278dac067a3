"""The certificate and trust anchors the core's listeners use, swappable while
it runs (CA rotation, re-issued core certificate).

gRPC calls each fetcher from its own threads before a TLS handshake; it
returns a new configuration only when one was installed since that
listener's last call, so unchanged handshakes reuse the cached TLS context.
Connections already open keep the configuration they were accepted with.
"""

from __future__ import annotations

import threading

import grpc


class _Listener:
    def __init__(self, config: grpc.ServerCertificateConfiguration) -> None:
        self.initial = config
        self.pending: grpc.ServerCertificateConfiguration | None = None


class CoreTLS:
    """Server credentials for the mTLS port (client certificates verified
    against the trust bundle) and the bootstrap port (no client certificate)."""

    def __init__(self, key_pem: bytes, chain_pem: bytes, bundle_pem: bytes) -> None:
        self._lock = threading.Lock()
        self._mtls = _Listener(grpc.ssl_server_certificate_configuration([(key_pem, chain_pem)], bundle_pem))
        self._bootstrap = _Listener(grpc.ssl_server_certificate_configuration([(key_pem, chain_pem)]))
        self._bundle_pem = bundle_pem

    @property
    def bundle_pem(self) -> bytes:
        return self._bundle_pem

    def install(self, key_pem: bytes, chain_pem: bytes, bundle_pem: bytes) -> None:
        """Present `chain_pem` and trust `bundle_pem` on every handshake from now on."""
        mtls = grpc.ssl_server_certificate_configuration([(key_pem, chain_pem)], bundle_pem)
        bootstrap = grpc.ssl_server_certificate_configuration([(key_pem, chain_pem)])
        with self._lock:
            self._mtls.pending, self._bootstrap.pending = mtls, bootstrap
            self._bundle_pem = bundle_pem

    def _fetcher(self, listener: _Listener) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            config, listener.pending = listener.pending, None
        return config

    def mtls_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._mtls.initial,
            lambda: self._fetcher(self._mtls),  # type: ignore[arg-type,return-value]  # None means "no change"
            require_client_authentication=True,
        )

    def bootstrap_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._bootstrap.initial,
            lambda: self._fetcher(self._bootstrap),  # type: ignore[arg-type,return-value]
            require_client_authentication=False,
        )
