"""`vivified operators list|revoke` against a running core: the operator
certificates the core issued, and revoking one (refused by every replica
within the registry sync bound)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Literal

import grpc
from google.protobuf import json_format

from vivified.admin.v1 import plugin_admin_pb2 as pb
from vivified.admin.v1 import plugin_admin_pb2_grpc
from vivified.core.cli._client import core_target, data_dir, describe, open_channel


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "list and revoke operator certificates on a running core"
    operators = sub.add_parser("operators", help=text, description=text)
    operators.add_argument("--data-dir", help="core data dir holding the operator certificate (default ./.vivified)")
    operators.add_argument("--core", metavar="HOST:PORT", help="core mTLS address (default: from the data dir)")
    verbs = operators.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="recorded operator certificates, newest first, and whether revoked")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = verbs.add_parser(
        "revoke",
        help="revoke one operator certificate by serial; every replica refuses it at its next call",
        description="Revoke an operator certificate (e.g. a leaked one). The core re-issues its own local "
        "operator certificate at its next start if that is the one revoked.",
    )
    revoke.add_argument("serial", help="hexadecimal serial, as `vivified operators list` shows it")
    revoke.add_argument("--reason", default="", help="recorded in the audit log")
    revoke.add_argument("--json", action="store_true", help="print JSON")


def _time(message: pb.OperatorCertificate, field: Literal["issue_time", "expire_time", "revoke_time"]) -> str:
    if not message.HasField(field):
        return "-"
    return str(getattr(message, field).ToDatetime().isoformat(timespec="seconds")) + "Z"


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    target = core_target(data_dir(args, environ), environ, args.core)
    async with open_channel(target) as channel:
        stub = plugin_admin_pb2_grpc.PluginAdminServiceStub(channel)
        try:
            if args.verb == "list":
                listed = await stub.ListOperatorCertificates(pb.ListOperatorCertificatesRequest(), timeout=30)
                certificates = list(listed.certificates)
                reply: object = listed
            else:
                revoked = await stub.RevokeOperatorCertificate(
                    pb.RevokeOperatorCertificateRequest(serial=args.serial, reason=args.reason), timeout=30
                )
                certificates = [revoked.certificate]
                reply = revoked
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    if args.json:
        out.append(json_format.MessageToJson(reply, preserving_proto_field_name=True))  # type: ignore[arg-type]
        return 0
    out.append(f"{'SERIAL':42} {'NAME':12} {'ISSUED':21} {'EXPIRES':21} REVOKED")
    for c in certificates:
        out.append(
            f"{c.serial:42} {c.name:12} {_time(c, 'issue_time'):21} {_time(c, 'expire_time'):21} "
            f"{_time(c, 'revoke_time')}"
        )
    return 0
