"""E4/K4 after a full run on the production-shaped path (Redis Streams, a plugin
publishing, people signing in with MFA, an API key, a failed login): no
password, TOTP seed, access or refresh token, or API key appears in Redis (its
keys, values and append-only file), the audit rows, the core's log, the
metrics endpoint, or the details of any error returned."""

from __future__ import annotations

import pathlib
import time
import urllib.request

import grpc
import pytest
import redis
import sqlalchemy as sa

from support.clients import bootstrap_channel, error_info
from support.events import USER_CREATED, Inbox, event_plugin
from support.processes import CoreProcess, core_running
from support.redis_server import redis_running
from support.users import (
    api_key_secret,
    auth_call,
    bearer,
    code_at,
    create_admin,
    expect_error,
    login,
)
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import auth_pb2 as auth_pb

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

PASSWORD = "canary-Pa55word-7f3e91c2"
WRONG_PASSWORD = "canary-Wr0ng-b81d44a0"


def redis_contents(url: str, directory: pathlib.Path) -> bytes:
    """Every key, every value (streams entry by entry) and the append-only files."""
    parts: list[bytes] = []
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(count=1000):
            parts.append(key)
            kind = client.type(key)
            if kind == b"stream":
                for _, fields in client.xrange(key):
                    parts.extend(k + v for k, v in fields.items())
            elif kind == b"string":
                parts.append(client.get(key) or b"")
            elif kind == b"hash":
                parts.extend(k + v for k, v in client.hgetall(key).items())
            else:
                parts.append(client.dump(key) or b"")
    parts.extend(path.read_bytes() for path in directory.rglob("*.aof*") if path.is_file())
    return b"\n".join(parts)


def audit_text(core: CoreProcess) -> str:
    engine = sa.create_engine(f"sqlite+pysqlite:///{core.data_dir / 'vivified.db'}")
    try:
        table = sa.Table("audit_log", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for row in conn.execute(sa.select(table)))
    finally:
        engine.dispose()


async def test_no_secret_of_a_full_run_leaks(tmp_path: pathlib.Path) -> None:
    with redis_running(tmp_path / "redis") as redis_server:
        flags = ("--heartbeat-interval", "1", "--redis-url", redis_server.url)
        with core_running(tmp_path / "data", *flags) as core:
            errors: list[grpc.aio.AioRpcError] = []
            # People: an admin with MFA, tokens, a refresh, an API key, a failed login.
            create_admin(core, "canary-admin", PASSWORD, tmp_path)
            first = await login(core, "canary-admin", PASSWORD)
            enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
            confirmed = await auth_call(
                core,
                "ConfirmMfa",
                auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),
            )
            tokens = confirmed.tokens
            refreshed = await auth_call(core, "Refresh", auth_pb.RefreshRequest(refresh_token=tokens.refresh_token))
            async with bootstrap_channel(core) as channel:
                created = await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
                    keys_pb.CreateApiKeyRequest(name="ci", scopes=["plugin_manager"]),
                    metadata=bearer(refreshed.tokens.access_token),
                    timeout=10,
                )
                await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                    admin_pb.ListPluginsRequest(), metadata=(("x-api-key", created.api_key),), timeout=10
                )
            errors.append(await expect_error(login(core, "canary-admin", WRONG_PASSWORD)))
            errors.append(
                await expect_error(
                    auth_call(core, "Refresh", auth_pb.RefreshRequest(refresh_token=tokens.refresh_token))
                )
            )
            assert error_info(errors[0]).reason == "LOGIN_FAILED"

            # Plugins: events through Redis.
            publisher = await event_plugin(core, tmp_path, "canary-pub", publishes=[USER_CREATED])
            subscriber = await event_plugin(core, tmp_path, "canary-sub", subscribes=[USER_CREATED])
            try:
                inbox = Inbox()
                await subscriber.subscribe("users", {UserCreated: inbox}).opened()
                await publisher.publish(UserCreated(user_id="u-1", username="canary-admin"))
                while not inbox.received:
                    await inbox.arrived.wait()
            finally:
                await publisher.stop()
                await subscriber.stop()

            metrics = urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=5).read().decode()
            canaries = {
                "password": PASSWORD,
                "wrong password": WRONG_PASSWORD,
                "TOTP seed": enrol.secret,
                "access token": tokens.access_token,
                "refreshed access token": refreshed.tokens.access_token,
                "refresh token": tokens.refresh_token,
                "API key": created.api_key,
                "API key secret": api_key_secret(created.api_key),
            }
            places = {
                "redis": redis_contents(redis_server.url, tmp_path / "redis").decode(errors="replace"),
                "audit rows": audit_text(core),
                "core log": core.log(),
                "metrics": metrics,
                "error details": "\n".join(f"{e.details()} {error_info(e)}" for e in errors),
            }
            assert "UserCreated" in places["redis"]  # the scan did read the event streams
            leaks = [
                f"{name} in {place}"
                for name, value in canaries.items()
                for place, text in places.items()
                if value in text
            ]
            assert leaks == []
