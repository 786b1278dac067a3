"""`vivified proto-path`: print the directory holding the contracts' .proto
files (ours under `vivified/`, and the `grpc.health.v1` and `google.rpc` protos
beside them), so another language's codegen or grpcurl can use the installed
copy: `grpcurl -import-path "$(vivified proto-path)" -proto vivified/...`.

From a wheel this is `<site-packages>/vivified/proto`; from a checkout's
editable install it is the checkout's `proto/`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

from vivified.core.cli._client import ClientError

_MARKER = pathlib.Path("grpc/health/v1/health.proto")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "proto-path",
        help="print where the installed .proto files are (for grpcurl -import-path, codegen)",
        description="Print the directory holding the installed contracts (.proto files), for "
        '`grpcurl -import-path "$(vivified proto-path)"` or another language\'s code generator. '
        "Exits 1 when the installation carries no protos.",
    )
    cmd.add_argument("--json", action="store_true", help='print {"proto_path": ..., "files": [...]}')


def proto_path() -> pathlib.Path:
    """The directory of the installed protos; ClientError PROTOS_MISSING when absent.

    `vivified.proto` holds data only (no `__init__.py`): it sits beside
    `vivified.core` in a wheel (`vivified/proto`) and is the checkout's
    `proto/` beside `core/` in an editable install."""
    core = importlib.util.find_spec("vivified.core")
    for location in (core.submodule_search_locations or []) if core is not None else []:
        path = pathlib.Path(location).parent / "proto"
        if (path / _MARKER).is_file():
            return path.resolve()
    raise ClientError("this installation carries no .proto files (vivified.proto not found)", "PROTOS_MISSING")


def run(args: argparse.Namespace, out: list[str]) -> int:
    path = proto_path()
    if args.json:
        files = sorted(str(p.relative_to(path)) for p in path.rglob("*.proto"))
        out.append(json.dumps({"proto_path": str(path), "files": files}, indent=2))
    else:
        out.append(str(path))
    return 0
