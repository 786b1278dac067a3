"""What a benchmark starts on loopback: cores, plugin processes, a Redis
server — child processes stopped by pid — and mTLS identities registered the
way a plugin registers (approval, join token, CSR)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.ca import new_private_key
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc


def pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def credentials(root: bytes, key: bytes, chain: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root, key, chain)


async def wait_for_file(path: pathlib.Path, process: subprocess.Popen[bytes], timeout: float) -> dict[str, str]:
    """The JSON a child writes once it serves (a core's run file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        if path.exists():
            return dict(json.loads(path.read_text()))
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{path} did not appear within {timeout}s")


@dataclass
class RunningCore:
    """A core process, its addresses, and an operator channel to it."""

    data: pathlib.Path
    info: dict[str, str]
    operator: grpc.aio.Channel
    pid: int

    @property
    def root(self) -> bytes:
        return (self.data / "operator" / "ca.crt").read_bytes()

    @property
    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", f"core.{self.info['trust_domain']}")]

    @property
    def admin(self) -> admin_grpc.PluginAdminServiceAsyncStub:
        return admin_grpc.PluginAdminServiceStub(self.operator)

    async def register(self, manifest: PluginManifest) -> grpc.aio.Channel:
        """Approve `manifest`, register it with a fresh key and return an mTLS
        channel with the issued certificate. The endpoint is a closed port: the
        identity only calls the core, nothing calls it."""
        approval = await self.admin.ApprovePlugin(admin_pb.ApprovePluginRequest(manifest=manifest, replace=True))
        key = new_private_key()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, manifest.id)]))
            .sign(key, hashes.SHA256())
        )
        async with grpc.aio.secure_channel(
            self.info["bootstrap_address"], grpc.ssl_channel_credentials(self.root), options=self.options
        ) as boot:
            registered = await registry_pb2_grpc.PluginRegistryServiceStub(boot).Register(
                registry_pb2.RegisterRequest(
                    manifest=manifest,
                    csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
                    join_token=approval.join_token,
                    endpoint="127.0.0.1:9",
                )
            )
        return grpc.aio.secure_channel(
            self.info["listen_address"],
            credentials(self.root, pem(key), registered.certificate_chain_pem.encode()),
            options=self.options,
        )


class Platform:
    """Child processes of one benchmark run, stopped by pid in reverse order."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self._channels: list[grpc.aio.Channel] = []

    def spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{len(self.processes)}.log", "wb")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.processes.append(process)
        return process

    async def start_core(self, name: str, env: dict[str, str], *flags: str) -> RunningCore:
        """A core with its own data dir under `name`, on ephemeral loopback ports."""
        data = self.dir / name
        process = self.spawn(
            [
                sys.executable,
                "-m",
                "vivified.core.cli",
                "core",
                "--data-dir",
                str(data),
                "--listen",
                "127.0.0.1:0",
                "--bootstrap",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                *flags,
            ],
            env,
        )
        info = await wait_for_file(data / "run" / "core.json", process, 60)
        operator = data / "operator"
        channel = grpc.aio.secure_channel(
            info["listen_address"],
            credentials(
                (operator / "ca.crt").read_bytes(),
                (operator / "operator.key").read_bytes(),
                (operator / "operator.crt").read_bytes(),
            ),
            options=[("grpc.ssl_target_name_override", f"core.{info['trust_domain']}")],
        )
        self._channels.append(channel)
        return RunningCore(data=data, info=info, operator=channel, pid=process.pid)

    def own(self, channel: grpc.aio.Channel) -> Callable[[], grpc.aio.Channel]:
        """Close `channel` with the platform; returns it as the SDK's channel getter."""
        self._channels.append(channel)
        return lambda: channel

    async def start_redis(self) -> str | None:
        """A redis-server on a free loopback port, every write fsynced (AOF,
        `appendfsync always`: acknowledged means on disk, like the embedded
        store); returns its URL, or None when no redis-server is on PATH."""
        binary = shutil.which("redis-server")
        if binary is None:
            return None
        directory = self.dir / "redis"
        directory.mkdir()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = self.spawn(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(directory),
            ],
            {},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}; see {self.dir}")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.write(b"PING\r\n")
            reply = await reader.readline()
            writer.close()
            await writer.wait_closed()
            if reply.startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0"
            await asyncio.sleep(0.05)  # still loading
        raise RuntimeError("redis-server did not answer PING within 30s")

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self.stop()

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
