"""`vivified users create|list|roles|reset-mfa` against a running core, as the
local operator or, with `VIVIFIED_API_KEY`, as the key's user (`create`, `list`
and `reset-mfa` need `user_manager`, `roles` needs `viewer`).

`reset-mfa` is how an operator recovers a person who lost their authenticator,
including the last admin, whom no console session can help: it calls
`ResetUserMfa` with the local operator's client certificate.

`create` without `--password-file` invites the person: the core issues a
one-time activation token and publishes `UserCreated`, whose CONFIDENTIAL
token field only a subscriber granted `handles_confidential` (the email
gateway) receives. The command does not print the token unless asked
(`--print-activation-token`), for operators who hand it over themselves."""

from __future__ import annotations

import argparse
import getpass
import json
import pathlib
import secrets
from collections.abc import Mapping

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from vivified.admin.v1 import access_catalogue_pb2 as access_pb
from vivified.admin.v1 import access_catalogue_pb2_grpc
from vivified.core.cli._client import ClientError, core_target, data_dir, describe, open_channel
from vivified.identity.v1 import user_admin_pb2 as users_pb
from vivified.identity.v1 import user_admin_pb2_grpc

REMOTE_VERBS = frozenset({"create", "list", "roles", "reset-mfa"})
_MAX_PASSWORD_FILE = 4096


def read_password(path: pathlib.Path | None) -> str:
    """The password from `path` (first line), else asked twice without echo."""
    if path is not None:
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_PASSWORD_FILE + 1)
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror}") from None
        if len(raw) > _MAX_PASSWORD_FILE:
            raise ClientError(f"{path} is larger than {_MAX_PASSWORD_FILE} bytes")
        return raw.decode("utf-8").rstrip("\r\n")
    try:
        first = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
    except EOFError:
        raise ClientError("no password given; type it when asked or pass --password-file") from None
    if again != first:
        raise ClientError("the passwords differ")
    return first


def _remote_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--core", metavar="HOST:PORT", help="core address (default: from the data dir)")
    cmd.add_argument("--json", action="store_true", help="print JSON")


def add_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    create = verbs.add_parser(
        "create",
        help="create a user on a running core (needs user_manager); without --password-file the user is invited",
        description="Create a user on a running core, as the local operator or as the user of VIVIFIED_API_KEY "
        "(who needs user_manager). Without --password-file the account is invited: the core issues a one-time "
        "activation token, redeemed with AuthService.ActivateAccount, and publishes UserCreated.",
    )
    create.add_argument("--username", required=True, help="login name (a-z, 0-9, '.', '_', '-', '@')")
    create.add_argument("--email", default="", help="email address (the welcome mail goes there)")
    create.add_argument("--display-name", default="", help='name to show, e.g. "Ada L"')
    create.add_argument(
        "--role",
        action="append",
        required=True,
        dest="roles",
        metavar="ROLE",
        help="role to grant (repeatable); `vivified users roles` lists them",
    )
    create.add_argument(
        "--password-file",
        type=pathlib.Path,
        metavar="FILE",
        help="set this initial password (first line of FILE) instead of inviting",
    )
    create.add_argument(
        "--print-activation-token",
        action="store_true",
        help="print the invited user's activation token (it is a credential: hand it over privately)",
    )
    _remote_flags(create)
    reset = verbs.add_parser(
        "reset-mfa",
        help="remove a user's second factor on a running core (needs user_manager); they enrol again",
        description="Reset a user's MFA (UserAdminService.ResetUserMfa): the TOTP secret and backup codes are "
        "removed and the user's sessions end; a user whose roles require MFA must enrol a new authenticator "
        "at the next sign-in. The reason goes into the audit record.",
    )
    reset.add_argument("--user-id", required=True, help="the user's id (usr_...); `vivified users list` shows it")
    reset.add_argument("--reason", required=True, help="why, for the audit log (e.g. how the person was verified)")
    _remote_flags(reset)
    for verb, text in (
        ("list", "list users (needs user_manager)"),
        ("roles", "list roles, their traits and whether MFA is required"),
    ):
        _remote_flags(verbs.add_parser(verb, help=f"{text}, on a running core"))


def _create_request(args: argparse.Namespace) -> users_pb.CreateUserRequest:
    return users_pb.CreateUserRequest(
        username=args.username,
        password=read_password(args.password_file) if args.password_file is not None else "",
        roles=args.roles,
        email=args.email,
        display_name=args.display_name,
    )


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    request = _create_request(args) if args.verb == "create" else None
    trace_id = secrets.token_hex(16)
    async with open_channel(core_target(data_dir(args, environ), environ, args.core)) as channel:
        try:
            reply: Message
            if request is not None:
                # A trace of our own, so the workflow the creation starts (UserCreated, the
                # welcome mail, ...) can be found in the audit log: `audit query --trace`.
                reply = await user_admin_pb2_grpc.UserAdminServiceStub(channel).CreateUser(
                    request, timeout=30, metadata=(("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)
                )
            elif args.verb == "reset-mfa":
                reply = await user_admin_pb2_grpc.UserAdminServiceStub(channel).ResetUserMfa(
                    users_pb.ResetUserMfaRequest(user_id=args.user_id, reason=args.reason), timeout=30
                )
            elif args.verb == "list":
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
    if isinstance(reply, users_pb.CreateUserResponse) and not args.print_activation_token:
        reply.ClearField("activation_token")
    if args.json and isinstance(reply, users_pb.CreateUserResponse):
        data = json_format.MessageToDict(reply, preserving_proto_field_name=True)
        out.append(json.dumps({**data, "trace_id": trace_id}, indent=2))
    elif args.json:
        out.append(json_format.MessageToJson(reply, preserving_proto_field_name=True))
    elif isinstance(reply, users_pb.CreateUserResponse):
        user = reply.user
        state = "invited (activation pending)" if user.invited else "active"
        out.append(f"created {user.username!r} ({user.user_id}), roles {','.join(user.roles)}: {state}")
        if user.invited:
            out.append(f"activation token expires {reply.activation_expire_time.ToJsonString()}")
        if reply.activation_token:
            out.append(f"activation token: {reply.activation_token}")
        out.append(f"trace {trace_id}: vivified audit query --trace {trace_id}")
    elif isinstance(reply, users_pb.ResetUserMfaResponse):
        user = reply.user
        out.append(
            f"reset MFA of {user.username!r} ({user.user_id}): their sessions ended; "
            "they must enrol a new authenticator at the next sign-in if their roles require MFA"
        )
    elif isinstance(reply, users_pb.ListUsersResponse):
        out.append(f"{'USER':28} {'USERNAME':24} {'STATE':9} ROLES")
        out.extend(
            f"{u.user_id:28} {u.username:24} "
            f"{'disabled' if u.disabled else 'invited' if u.invited else 'active':9} {','.join(u.roles)}"
            for u in reply.users
        )
    elif isinstance(reply, access_pb.ListRolesResponse):
        out.append(f"{'ROLE':14} {'MFA':4} TRAITS")
        out.extend(f"{r.name:14} {'yes' if r.mfa_required else 'no':4} {','.join(r.traits)}" for r in reply.roles)
    return 0
