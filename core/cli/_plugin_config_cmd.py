"""`vivified config plugin get|set|history PLUGIN` against a running core,
with the operator certificate from the data dir, or as the user of
`VIVIFIED_API_KEY` (who needs config_manager). Secret values are masked in
everything this prints; `--value-stdin` keeps a secret out of the process list
and shell history."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from vivified.config.v1 import config_pb2 as pb
from vivified.config.v1 import config_pb2_grpc
from vivified.core.cli._client import (
    ClientError,
    core_target,
    data_dir,
    describe,
    open_channel,
)
from vivified.core.manifest import type_name

_SOURCE = {v: k.removeprefix("CONFIG_VALUE_SOURCE_").lower() for k, v in pb.ConfigValueSource.items()}


def add_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugin = verbs.add_parser(
        "plugin",
        help="read and change a plugin's configuration on a running core",
        description="Plugin configuration on a running core (operator certificate from the data dir, or VIVIFIED_API_KEY). "
        "Every change needs --reason and is audited and kept in history; secrets print as ********.",
    )
    plugin.add_argument("--data-dir", help="core data dir holding the operator certificate (default ./.vivified)")
    plugin.add_argument(
        "--core",
        metavar="HOST:PORT",
        help="core mTLS address, or the bootstrap port with VIVIFIED_API_KEY (default: from the data dir)",
    )
    plugin.add_argument("--json", action="store_true", help="print JSON")
    actions = plugin.add_subparsers(dest="action", required=True)
    get = actions.add_parser("get", help="every declared key with its value and source")
    get.add_argument("plugin_id")
    change = actions.add_parser("set", help="set one key (validated against the plugin's approved schema)")
    change.add_argument("plugin_id")
    change.add_argument("key")
    change.add_argument("value", nargs="?", help="the new value (or --value-stdin)")
    change.add_argument("--value-stdin", action="store_true", help="read the value from stdin (for secrets)")
    change.add_argument("--reason", required=True, help="why; kept in history and the audit log")
    history = actions.add_parser("history", help="changes, newest first")
    history.add_argument("plugin_id")
    history.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 500)")


def _value(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.value_stdin == (args.value is not None):
        raise ClientError("give the value either as an argument or with --value-stdin")
    return stdin.read().rstrip("\n") if args.value_stdin else str(args.value)


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str], stdin: TextIO = sys.stdin) -> int:
    request: Message
    if args.action == "get":
        request, method = pb.GetPluginConfigRequest(plugin_id=args.plugin_id), "GetPluginConfig"
    elif args.action == "set":
        request = pb.SetPluginConfigValueRequest(
            plugin_id=args.plugin_id, key=args.key, value=_value(args, stdin), reason=args.reason
        )
        method = "SetPluginConfigValue"
    else:
        request = pb.ListPluginConfigHistoryRequest(plugin_id=args.plugin_id, page_size=args.limit)
        method = "ListPluginConfigHistory"
    target = core_target(data_dir(args, environ), environ, args.core)
    async with open_channel(target) as channel:
        try:
            reply = await getattr(config_pb2_grpc.ConfigServiceStub(channel), method)(request, timeout=30)
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    out.extend(_render(args, reply))
    return 0


def _row(value: pb.ConfigValue) -> str:
    shown = value.value if value.source != pb.CONFIG_VALUE_SOURCE_UNSET else "(unset)"
    who = f" by {value.update_actor}" if value.update_actor else ""
    required = " required" if value.required else ""
    return f"{value.key:24} {shown:32} {type_name(value.type):7} {_SOURCE[value.source]}{who}{required}"


def _render(args: argparse.Namespace, reply: Message) -> list[str]:
    if args.json:
        return [json_format.MessageToJson(reply, preserving_proto_field_name=True)]
    if isinstance(reply, pb.GetPluginConfigResponse):
        return [_row(v) for v in reply.values] or [f"{args.plugin_id} declares no configuration"]
    if isinstance(reply, pb.SetPluginConfigValueResponse):
        return [_row(reply.value)]
    assert isinstance(reply, pb.ListPluginConfigHistoryResponse)
    return [
        f"{c.change_time.ToDatetime().isoformat()}Z {c.key} {c.old_value or '(none)'} -> {c.new_value} "
        f"by {c.change_actor}: {c.reason}"
        for c in reply.changes
    ]
