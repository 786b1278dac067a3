"""A real core serving the object store on each backend, and raw plugins
(their own mTLS channels) calling it."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from support.clients import admitted_plugin, error_info, plugin_channel
from support.processes import CoreProcess, start_core, stop_process
from vivified.core.db import plain_engine
from vivified.storage.v1 import object_store_pb2 as pb
from vivified.storage.v1 import object_store_pb2_grpc

PHI_COMPLIANCE = {
    "data_classifications": ["CLASSIFICATION_PHI"],
    "hipaa_controls": ["164.312(a)", "164.312(b)"],
    "retention_days": 2555,
}


@dataclass
class StorageCore:
    """A running core, its database and which object store backend it uses."""

    core: CoreProcess
    url: str
    backend: str
    data_dir: pathlib.Path
    flags: tuple[str, ...]

    def audit(self, **where: str) -> list[sa.Row[Any]]:
        engine = plain_engine(self.url)
        try:
            table = sa.Table("audit_log", sa.MetaData(), autoload_with=engine)
            query = sa.select(table).order_by(table.c.seq)
            for column, value in where.items():
                query = query.where(table.c[column] == value)
            with engine.connect() as conn:
                return list(conn.execute(query).all())
        finally:
            engine.dispose()

    def restart(self, *extra: str) -> None:
        assert stop_process(self.core.process) == 0, self.core.log()
        self.core = start_core(self.data_dir, *self.flags, *extra)


def core_flags(url: str, backend: str, *extra: str) -> tuple[str, ...]:
    return ("--database-url", url, "--storage-backend", backend, "--leaf-ttl", "600", *extra)


@pytest.fixture
def storage_core(
    tmp_path: pathlib.Path, migrated_database_url: str, request: pytest.FixtureRequest
) -> Iterator[StorageCore]:
    """sqlite → the directory backend; postgresql → the database backend."""
    backend = "database" if migrated_database_url.startswith("postgresql") else "directory"
    marker = request.node.get_closest_marker("core_flags")
    flags = core_flags(migrated_database_url, backend, *(marker.args if marker else ()))
    data_dir = tmp_path / "data"
    running = StorageCore(start_core(data_dir, *flags), migrated_database_url, backend, data_dir, flags)
    yield running
    stop_process(running.core.process)


@dataclass
class RawPlugin:
    plugin_id: str
    channel: grpc.aio.Channel

    @property
    def stub(self) -> Any:
        return object_store_pb2_grpc.ObjectStoreServiceStub(self.channel)

    async def put(
        self,
        name: str,
        data: bytes,
        *,
        size: int | None = None,
        chunk: int = 64 * 1024,
        metadata: Sequence[tuple[str, str]] = (),
        **header: Any,
    ) -> pb.ObjectMetadata:
        async def messages() -> AsyncIterator[pb.PutObjectRequest]:
            yield pb.PutObjectRequest(
                header=pb.PutObjectHeader(name=name, size=len(data) if size is None else size, **header)
            )
            for start in range(0, len(data), chunk):
                yield pb.PutObjectRequest(chunk=data[start : start + chunk])

        reply = await self.stub.PutObject(messages(), timeout=20, metadata=metadata)
        return reply.metadata  # type: ignore[no-any-return]

    async def get(self, name: str, owner: str = "") -> tuple[pb.ObjectMetadata | None, bytes]:
        meta, parts = None, []
        async for message in self.stub.GetObject(pb.GetObjectRequest(name=name, owner_plugin=owner), timeout=20):
            if message.WhichOneof("part") == "metadata":
                meta = message.metadata
            else:
                parts.append(message.chunk)
        return meta, b"".join(parts)


async def raw_plugin(core: CoreProcess, plugin_id: str, *, traits: Sequence[str] = (), **manifest: Any) -> RawPlugin:
    identity = await admitted_plugin(core, plugin_id, contracts=[], traits=list(traits), **manifest)
    return RawPlugin(plugin_id, plugin_channel(core, identity))


def refusal(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    return err.code(), error_info(err).reason


def manifest_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)
