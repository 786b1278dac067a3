"""`vivified users list|roles` against a running core, as the local operator
or, with `VIVIFIED_API_KEY`, as the key's user (`list` needs `user_manager`,
`roles` needs `viewer`)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from vivified.admin.v1 import access_catalogue_pb2 as access_pb
from vivified.admin.v1 import access_catalogue_pb2_grpc
from vivified.core.cli._client import core_target, describe, open_channel
from vivified.core.cli._settings import data_dir
from vivified.identity.v1 import user_admin_pb2 as users_pb
from vivified.identity.v1 import user_admin_pb2_grpc

REMOTE_VERBS = frozenset({"list", "roles"})


def add_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, text in (("list", "list users (needs user_manager)"),
                       ("roles", "list roles, their traits and whether MFA is required")):
        cmd = verbs.add_parser(verb, help=f"{text}, on a running core")
        cmd.add_argument("--core", metavar="HOST:PORT", help="core address (default: from the data dir)")
        cmd.add_argument("--json", action="store_true", help="print JSON")


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    async with open_channel(core_target(data_dir(args, environ), environ, args.core)) as channel:
        try:
            reply: Message
            if args.verb == "list":
                stub = user_admin_pb2_grpc.UserAdminServiceStub(channel)
                reply, token = users_pb.ListUsersResponse(), ""
                while True:
                    page = await stub.ListUsers(users_pb.ListUsersRequest(page_size=500, page_token=token), timeout=30)
                    reply.users.extend(page.users)
                    token = page.next_page_token
                    if not token:
                        break
            else:
                reply = await access_catalogue_pb2_grpc.AccessCatalogueServiceStub(channel).ListRoles(
                    access_pb.ListRolesRequest(), timeout=30
                )
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    if args.json:
        out.append(json_format.MessageToJson(reply, preserving_proto_field_name=True))
    elif isinstance(reply, users_pb.ListUsersResponse):
        out.append(f"{'USER':28} {'USERNAME':24} {'STATE':9} ROLES")
        out.extend(
            f"{u.user_id:28} {u.username:24} {'disabled' if u.disabled else 'active':9} {','.join(u.roles)}"
            for u in reply.users
        )
    elif isinstance(reply, access_pb.ListRolesResponse):
        out.append(f"{'ROLE':14} {'MFA':4} TRAITS")
        out.extend(f"{r.name:14} {'yes' if r.mfa_required else 'no':4} {','.join(r.traits)}" for r in reply.roles)
    return 0
