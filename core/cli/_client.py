"""A command's channel to a running core.

Without `VIVIFIED_API_KEY`: mTLS on the core's port with the operator
certificate the core wrote into its data dir. With it: server-authenticated
TLS on the bootstrap port, every call carrying `x-api-key` metadata, so the
command acts as the key's user with the key's traits (the core's policy and
audit see that user). The core's CA certificate comes from `VIVIFIED_CA_FILE`
or the data dir; `--core` / `VIVIFIED_CORE_ADDRESS` then name the bootstrap port."""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from vivified.core.data_dir import DEFAULT_DATA_DIR, run_file


class ClientError(Exception):
    """A failed operator call, with the core's stable reason when it gave one."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


API_KEY_VARIABLE = "VIVIFIED_API_KEY"


def data_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> pathlib.Path:
    """The data dir of a client command (flag, then variable, then the default)."""
    value = getattr(args, "data_dir", None) or environ.get("VIVIFIED_DATA_DIR")
    return pathlib.Path(value) if value else DEFAULT_DATA_DIR


@dataclass(frozen=True)
class OperatorTarget:
    """Where and as whom to connect: the operator certificate, or an API key."""

    address: str
    trust_domain: str
    ca: bytes
    cert: bytes = b""
    key: bytes = b""
    api_key: str = ""
    ca_path: pathlib.Path | None = None
    """The file `ca` was read from: the root a plugin trusts on the bootstrap port too."""


def _running(data_dir: pathlib.Path) -> dict[str, str]:
    try:
        running = json.loads(run_file(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    return running if isinstance(running, dict) else {}


def core_target(data_dir: pathlib.Path, environ: Mapping[str, str], address: str | None) -> OperatorTarget:
    """The API key's user when `VIVIFIED_API_KEY` is set, else the local operator."""
    api_key = environ.get(API_KEY_VARIABLE, "")
    if not api_key:
        return operator_target(data_dir, environ, address)
    if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise ClientError(f"{API_KEY_VARIABLE} is not an API key (expected vk_<id>_<secret>)")
    ca_path = pathlib.Path(environ.get("VIVIFIED_CA_FILE") or data_dir / "operator" / "ca.crt")
    try:
        ca = ca_path.read_bytes()
    except OSError:
        raise ClientError(f"cannot read the core's CA certificate {ca_path}; set VIVIFIED_CA_FILE") from None
    running = _running(data_dir)
    address = address or environ.get("VIVIFIED_CORE_ADDRESS") or running.get("bootstrap_address")
    if not address:
        raise ClientError(f"no running core found for {data_dir}; pass --core HOST:PORT (the bootstrap port)")
    return OperatorTarget(
        address=address,
        trust_domain=running.get("trust_domain", "vivified.local"),
        ca=ca,
        api_key=api_key,
        ca_path=ca_path,
    )


def operator_target(data_dir: pathlib.Path, environ: Mapping[str, str], address: str | None) -> OperatorTarget:
    operator = data_dir / "operator"
    try:
        ca, cert, key = ((operator / n).read_bytes() for n in ("ca.crt", "operator.crt", "operator.key"))
    except OSError:
        raise ClientError(
            f"no operator certificate under {operator}; start the core with this data dir first (vivified up)"
        ) from None
    trust_domain = "vivified.local"
    address = address or environ.get("VIVIFIED_CORE_ADDRESS")
    try:
        running = json.loads(run_file(data_dir).read_text())
        trust_domain = running["trust_domain"]
        address = address or running["listen_address"]
    except (OSError, ValueError, KeyError):
        if address is None:
            raise ClientError(
                f"no running core found for {data_dir} (no {run_file(data_dir)}); pass --core HOST:PORT"
            ) from None
    return OperatorTarget(
        address=address, trust_domain=trust_domain, ca=ca, cert=cert, key=key, ca_path=operator / "ca.crt"
    )


class _ApiKey(grpc.AuthMetadataPlugin):
    """Adds the operator's API key to every call."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        callback((("x-api-key", self._key),), None)


def open_channel(target: OperatorTarget) -> grpc.aio.Channel:
    if target.api_key:
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(target.ca),
            grpc.metadata_call_credentials(_ApiKey(target.api_key), name="api-key"),
        )
    else:
        credentials = grpc.ssl_channel_credentials(target.ca, target.key, target.cert)
    return grpc.aio.secure_channel(
        target.address, credentials, options=[("grpc.ssl_target_name_override", f"core.{target.trust_domain}")]
    )


def describe(err: grpc.aio.AioRpcError) -> ClientError:
    """Turn an RPC error into a message and the core's ErrorInfo reason."""
    from vivified.core.chain import error_info  # noqa: PLC0415 - only on failure: the chain is slow to import

    info = error_info(err)
    reason = info.reason if info is not None else ""
    message = f"{err.code().name}: {err.details()}"
    return ClientError(message + (f" [{reason}]" if reason else ""), reason)
