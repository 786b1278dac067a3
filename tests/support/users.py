"""Helpers for tests that sign people in to a real core over the bootstrap port."""

from __future__ import annotations

import pathlib

import grpc

from support.clients import bootstrap_channel
from support.processes import CoreProcess, run_cli
from vivified.core.identity import totp
from vivified.core.identity._totp import decode_secret
from vivified.identity.v1 import auth_pb2 as auth_pb
from vivified.identity.v1 import auth_pb2_grpc as auth_grpc
from vivified.identity.v1 import user_admin_pb2 as users_pb
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc


def create_admin(core: CoreProcess, username: str, password: str, tmp: pathlib.Path) -> None:
    secret_file = tmp / f"{username}.pw"
    secret_file.write_text(password + "\n")
    secret_file.chmod(0o600)
    result = run_cli(core, "users", "create-admin", "--username", username, "--password-file", str(secret_file))
    assert result.returncode == 0, result.stderr


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def api_key_secret(api_key: str) -> str:
    """The secret part of `vk_vak_<hex id>_<secret>`; the secret is base64url and may itself contain `_`."""
    secret = api_key.split("_", 3)[3]
    assert len(secret) == 43, api_key
    return secret


def code_at(secret_b32: str, epoch: float) -> str:
    return totp(decode_secret(secret_b32), epoch)


async def login(core: CoreProcess, username: str, password: str) -> auth_pb.LoginResponse:
    async with bootstrap_channel(core) as channel:
        return await auth_grpc.AuthServiceStub(channel).Login(
            auth_pb.LoginRequest(username=username, password=password), timeout=10
        )


async def auth_call(core: CoreProcess, method: str, request: object, token: str | None = None) -> object:
    async with bootstrap_channel(core) as channel:
        stub = auth_grpc.AuthServiceStub(channel)
        return await getattr(stub, method)(request, metadata=bearer(token) if token else None, timeout=10)


async def users_call(core: CoreProcess, method: str, request: object, token: str | None = None) -> object:
    async with bootstrap_channel(core) as channel:
        stub = users_grpc.UserAdminServiceStub(channel)
        return await getattr(stub, method)(request, metadata=bearer(token) if token else None, timeout=10)


async def expect_error(awaitable: object) -> grpc.aio.AioRpcError:
    try:
        await awaitable  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the call succeeded")


__all__ = ["auth_pb", "users_pb"]
