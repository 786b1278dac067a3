"""The descriptor set Envoy's transcoder reads, built from proto/ by buf.

Nothing commits it: `vivified rest config` (and `vivified up`) run
`buf build --as-file-descriptor-set` on the workspace (the directory holding
buf.yaml) or read a set an operator built the same way in their build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from vivified.core.errors import FailedPrecondition

_DOMAIN = "vivified.rest"


def _failed(message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason="DESCRIPTORS_UNAVAILABLE", domain=_DOMAIN)


def checkout_root() -> Path | None:
    """The source checkout this package runs from (the directory with buf.yaml
    and proto/), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "buf.yaml").is_file() and (root / "proto").is_dir() else None


def find_buf(workspace: Path) -> str | None:
    local = workspace / "node_modules" / ".bin" / "buf"
    return str(local) if os.access(local, os.X_OK) else shutil.which("buf")


def build_descriptor_set(workspace: Path, out: Path, *, buf: str | None = None) -> Path:
    """Run `buf build --as-file-descriptor-set` on `workspace` into `out`
    (source info kept: the OpenAPI document takes its descriptions from the
    proto comments)."""
    tool = buf or find_buf(workspace)
    if tool is None:
        raise _failed(f"buf is not installed (tools/setup.sh installs it into {workspace / 'node_modules/.bin'})")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [tool, "build", str(workspace), "--as-file-descriptor-set", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise _failed(f"buf build failed: {result.stderr.strip()[:2000]}")
    return out


def load_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise _failed(f"cannot read the descriptor set {path}: {exc}") from None
    if not files.file:
        raise _failed(f"the descriptor set {path} holds no files")
    return files
