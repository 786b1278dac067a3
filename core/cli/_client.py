"""The operator's channel to a running core: mTLS with the operator
certificate the core wrote into its data dir."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from vivified.core.app import run_file
from vivified.core.chain import error_info


class ClientError(Exception):
    """A failed operator call, with the core's stable reason when it gave one."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OperatorTarget:
    address: str
    trust_domain: str
    ca: bytes
    cert: bytes
    key: bytes


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
    return OperatorTarget(address=address, trust_domain=trust_domain, ca=ca, cert=cert, key=key)


def open_channel(target: OperatorTarget) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(target.ca, target.key, target.cert)
    return grpc.aio.secure_channel(
        target.address, credentials, options=[("grpc.ssl_target_name_override", f"core.{target.trust_domain}")]
    )


def describe(err: grpc.aio.AioRpcError) -> ClientError:
    """Turn an RPC error into a message and the core's ErrorInfo reason."""
    info = error_info(err)
    reason = info.reason if info is not None else ""
    message = f"{err.code().name}: {err.details()}"
    return ClientError(message + (f" [{reason}]" if reason else ""), reason)
