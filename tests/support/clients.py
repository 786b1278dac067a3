"""Clients a test uses against a real core: operator, bootstrap and raw plugin
channels (a raw plugin does by hand what a plugin in any language would do)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import grpc
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc


def manifest_message(plugin_id: str = "demo-plugin", **overrides: Any) -> PluginManifest:
    data: dict[str, Any] = {
        "id": plugin_id,
        "name": "Demo plugin",
        "version": "0.1.0",
        "description": "a plugin used by the tests",
        "contracts": ["vivified.communication.v1.CommunicationPluginService"],
        "traits": ["communication_plugin"],
    }
    data.update(overrides)
    return json_format.ParseDict(data, PluginManifest())


def target_override(core: CoreProcess) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", f"core.{core.trust_domain}")]


def operator_channel(core: CoreProcess) -> grpc.aio.Channel:
    d = core.operator_dir
    creds = grpc.ssl_channel_credentials(
        (d / "ca.crt").read_bytes(), (d / "operator.key").read_bytes(), (d / "operator.crt").read_bytes()
    )
    return grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core))


def bootstrap_channel(core: CoreProcess) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(core.ca_pem)
    return grpc.aio.secure_channel(core.bootstrap_address, creds, options=target_override(core))


def new_csr(common_name: str = "plugin", key: ec.EllipticCurvePrivateKey | None = None) -> tuple[bytes, bytes]:
    """(csr_pem, key_pem) for a fresh P-256 key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass
class PluginIdentity:
    plugin_id: str
    chain_pem: bytes
    key_pem: bytes
    response: reg_pb.RegisterResponse

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem)


async def approve(core: CoreProcess, manifest: PluginManifest, **kwargs: Any) -> admin_pb.ApprovePluginResponse:
    async with operator_channel(core) as channel:
        return await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
            admin_pb.ApprovePluginRequest(manifest=manifest, **kwargs), timeout=10
        )


async def register(
    core: CoreProcess, manifest: PluginManifest, token: str, *, endpoint: str = "127.0.0.1:1", csr: bytes | None = None
) -> PluginIdentity:
    csr_pem, key_pem = new_csr(manifest.id)
    async with bootstrap_channel(core) as channel:
        response = await reg_grpc.PluginRegistryServiceStub(channel).Register(
            reg_pb.RegisterRequest(
                manifest=manifest, csr_pem=(csr or csr_pem).decode(), join_token=token, endpoint=endpoint
            ),
            timeout=10,
        )
    return PluginIdentity(manifest.id, response.certificate_chain_pem.encode(), key_pem, response)


async def admitted_plugin(core: CoreProcess, plugin_id: str = "demo-plugin", **overrides: Any) -> PluginIdentity:
    manifest = manifest_message(plugin_id, **overrides)
    approval = await approve(core, manifest, replace=True)
    return await register(core, manifest, approval.join_token)


def plugin_channel(core: CoreProcess, identity: PluginIdentity) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(core.ca_pem, identity.key_pem, identity.chain_pem)
    return grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core))


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo detail")


def audit_rows(core: CoreProcess, **where: str) -> list[sa.Row[Any]]:
    """Committed audit rows, optionally filtered by column equality."""
    engine = sa.create_engine(f"sqlite+pysqlite:///{core.data_dir / 'vivified.db'}")
    try:
        table = sa.Table("audit_log", sa.MetaData(), autoload_with=engine)
        query = sa.select(table).order_by(table.c.seq)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    finally:
        engine.dispose()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
