"""`vivified plugins approve|list|enable|disable|revoke` against a running core."""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from google.protobuf import json_format

from vivified.admin.v1 import plugin_admin_pb2 as pb
from vivified.admin.v1 import plugin_admin_pb2_grpc
from vivified.core.cli._client import (
    ClientError,
    OperatorTarget,
    core_target,
    data_dir,
    describe,
    open_channel,
)
from vivified.core.errors import VivifiedError
from vivified.core.manifest import load_manifest_file

_STATUS = {v: k.removeprefix("PLUGIN_STATUS_").lower() for k, v in pb.PluginStatus.items()}
_HEALTH = {v: k.removeprefix("PLUGIN_HEALTH_").lower() for k, v in pb.PluginHealth.items()}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugins = sub.add_parser("plugins", help="approve and govern plugins on a running core")
    plugins.add_argument("--data-dir", help="core data dir holding the operator certificate (default ./.vivified)")
    plugins.add_argument(
        "--core",
        metavar="HOST:PORT",
        help="core mTLS address, or the bootstrap port with VIVIFIED_API_KEY (default: from the data dir)",
    )
    verbs = plugins.add_subparsers(dest="verb", required=True)
    approve = verbs.add_parser("approve", help="validate a manifest and print a one-time join token")
    approve.add_argument("manifest", type=pathlib.Path, help="path to the plugin's manifest.yaml or .json")
    approve.add_argument("--grant", action="append", default=[], metavar="TRAIT", help="grant only these traits")
    approve.add_argument("--token-ttl", type=int, default=0, metavar="SECONDS", help="join token lifetime")
    approve.add_argument("--replace", action="store_true", help="supersede an existing approval/registration")
    approve.add_argument("--json", action="store_true", help="print JSON")
    listing = verbs.add_parser("list", help="list plugins and their status")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for verb, text in (
        ("enable", "let a disabled plugin work again"),
        ("disable", "refuse every call of a plugin"),
        ("revoke", "end a plugin's access for good"),
    ):
        cmd = verbs.add_parser(verb, help=text)
        cmd.add_argument("plugin_id")
        cmd.add_argument("--reason", default="", help="recorded in the audit log")


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    try:
        request = _request(args)
    except VivifiedError as exc:
        raise ClientError(exc.message, exc.reason) from None
    target = core_target(data_dir(args, environ), environ, args.core)
    async with open_channel(target) as channel:
        stub = plugin_admin_pb2_grpc.PluginAdminServiceStub(channel)
        try:
            reply = await getattr(stub, _METHODS[args.verb])(request, timeout=30)
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    out.extend(_render(args, reply, target))
    return 0


def ca_fingerprint(ca_pem: bytes) -> str:
    """sha256 of the CA certificate's DER, as `openssl x509 -noout -fingerprint -sha256` prints it."""
    try:
        digest = x509.load_pem_x509_certificate(ca_pem).fingerprint(hashes.SHA256())
    except ValueError:
        raise ClientError("the core's CA certificate file is not a PEM certificate", "CA_CERTIFICATE_INVALID") from None
    return ":".join(f"{b:02X}" for b in digest)


_METHODS = {
    "approve": "ApprovePlugin",
    "list": "ListPlugins",
    "enable": "EnablePlugin",
    "disable": "DisablePlugin",
    "revoke": "RevokePlugin",
}


def _request(args: argparse.Namespace) -> object:
    if args.verb == "approve":
        return pb.ApprovePluginRequest(
            manifest=load_manifest_file(args.manifest),
            granted_traits=args.grant,
            token_ttl_seconds=args.token_ttl,
            replace=args.replace,
        )
    if args.verb == "list":
        return pb.ListPluginsRequest()
    request_type = {
        "enable": pb.EnablePluginRequest,
        "disable": pb.DisablePluginRequest,
        "revoke": pb.RevokePluginRequest,
    }[args.verb]
    return request_type(plugin_id=args.plugin_id, reason=args.reason)


def _render(args: argparse.Namespace, reply: object, target: OperatorTarget) -> list[str]:
    if args.verb == "approve" and isinstance(reply, pb.ApprovePluginResponse):
        # The plugin trusts this root on the bootstrap port before it has an identity.
        ca_path = str(target.ca_path.resolve()) if target.ca_path is not None else ""
        fingerprint = ca_fingerprint(target.ca)
        if getattr(args, "json", False):
            data = json_format.MessageToDict(reply, preserving_proto_field_name=True)
            data.update(ca_certificate_file=ca_path, ca_certificate_sha256=fingerprint)
            return [json.dumps(data, indent=2)]
        expiry = reply.token_expire_time.ToDatetime().isoformat() + "Z"
        return [
            f"approved; manifest sha256 {reply.manifest_sha256}",
            f"granted traits: {', '.join(reply.granted_traits) or '(none)'}",
            f"CA certificate the plugin must trust (VIVIFIED_CA_FILE): {ca_path}",
            f"CA certificate sha256 fingerprint: {fingerprint}",
            f"join token (shown once, valid until {expiry}):",
            reply.join_token,
        ]
    if getattr(args, "json", False):
        return [json_format.MessageToJson(reply, preserving_proto_field_name=True)]  # type: ignore[arg-type]
    if args.verb == "list":
        assert isinstance(reply, pb.ListPluginsResponse)
        rows = [f"{'PLUGIN':24} {'STATUS':9} {'HEALTH':11} {'VERSION':10} ENDPOINT"]
        for p in reply.plugins:
            rows.append(f"{p.plugin_id:24} {_STATUS[p.status]:9} {_HEALTH[p.health]:11} {p.version:10} {p.endpoint}")
        return rows
    plugin = reply.plugin  # type: ignore[attr-defined]
    return [f"{plugin.plugin_id}: {_STATUS[plugin.status]}"]
