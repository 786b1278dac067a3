"""`vivified config core set|unset|list|history` against a running core, with
the operator certificate from the data dir (or as the user of `VIVIFIED_API_KEY`,
who needs config_manager): runtime overrides of the core's
own settings, stored in its database and applied by the running core: the core
that answers applies a change before it replies, other replicas sharing the
database within their settings refresh interval."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

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
from vivified.core.settings import RUNTIME_KEYS


def add_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    core = verbs.add_parser(
        "core",
        help="runtime overrides of core settings on a running core (applied live, without a restart)",
        description="Runtime overrides of core settings, the top layer above defaults, config file, environment "
        "and flags. Stored in the core's database, audited with --reason and kept in history. The core that "
        "answers applies a change before it replies; other replicas sharing the database apply it within their "
        f"settings refresh interval (--settings-refresh, default 3 s). Overridable: {', '.join(RUNTIME_KEYS)}.",
    )
    core.add_argument("--data-dir", help="core data dir holding the operator certificate (default ./.vivified)")
    core.add_argument(
        "--core",
        metavar="HOST:PORT",
        help="core mTLS address, or the bootstrap port with VIVIFIED_API_KEY (default: from the data dir)",
    )
    core.add_argument("--json", action="store_true", help="print JSON")
    actions = core.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "list", help="every overridable setting: the value this core applies now, its source, the stored override"
    )
    change = actions.add_parser("set", help="store an override (typed and checked like the config file)")
    change.add_argument("key")
    change.add_argument("value")
    change.add_argument("--reason", required=True, help="why; kept in history and the audit log")
    clear = actions.add_parser("unset", help="remove an override (the lower layers' value applies at once)")
    clear.add_argument("key")
    clear.add_argument("--reason", required=True, help="why; kept in history and the audit log")
    history = actions.add_parser("history", help="override changes, newest first")
    history.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 500)")


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    request: Message
    if args.action == "set":
        request = pb.SetCoreSettingRequest(key=args.key, value=args.value, reason=args.reason)
        method = "SetCoreSetting"
    elif args.action == "unset":
        request, method = pb.ClearCoreSettingRequest(key=args.key, reason=args.reason), "ClearCoreSetting"
    elif args.action == "list":
        request, method = pb.ListCoreSettingsRequest(), "ListCoreSettings"
    else:
        request, method = pb.ListCoreSettingHistoryRequest(page_size=args.limit), "ListCoreSettingHistory"
    target = core_target(data_dir(args, environ), environ, args.core)
    async with open_channel(target) as channel:
        try:
            reply = await getattr(config_pb2_grpc.ConfigServiceStub(channel), method)(request, timeout=30)
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    out.extend(_render(args, reply))
    return 0


def _row(setting: pb.CoreSetting) -> str:
    stored = (
        f"override {setting.override_value} by {setting.override_actor}: {setting.override_reason}"
        if setting.has_override
        else "no override"
    )
    # pending_restart: the stored override is not (yet) what this core applies
    # (another replica stored it since this core's last refresh, or it was refused).
    pending = "; not (yet) applied by this core" if setting.pending_restart else ""
    return f"{setting.key:28} {setting.effective_value:12} {setting.source} | {stored}{pending}"


def _render(args: argparse.Namespace, reply: Message) -> list[str]:
    if args.json:
        return [json_format.MessageToJson(reply, preserving_proto_field_name=True)]
    if isinstance(reply, pb.ListCoreSettingsResponse):
        return [_row(s) for s in reply.settings]
    if isinstance(reply, (pb.SetCoreSettingResponse, pb.ClearCoreSettingResponse)):
        return [_row(reply.setting)]
    if not isinstance(reply, pb.ListCoreSettingHistoryResponse):
        raise ClientError(f"unexpected reply {type(reply).__name__}")
    return [
        f"{c.change_time.ToDatetime().isoformat()}Z {c.key} {c.old_value or '(none)'} -> {c.new_value or '(cleared)'} "
        f"by {c.change_actor}: {c.reason}"
        for c in reply.changes
    ] or ["no runtime override changes"]
