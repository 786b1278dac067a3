"""K4: secrets a core gets from its environment — the Redis password in
VIVIFIED_REDIS_URL, the secrets key VIVIFIED_SECRETS_KEY, an egress credential
named by the egress config — are used but never echoed: not by health
checks, not in the core's log, not in the details of errors it returns, not
on the metrics page, not by `vivified config show`, and not in what a core
that refuses to start prints (canary grep)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import secrets
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.clients import admitted_plugin, bootstrap_channel, error_info, operator_channel, plugin_channel
from support.processes import clean_env, core_running, run_vivified
from support.redis_server import redis_running
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


def _described(err: grpc.aio.AioRpcError) -> str:
    return f"{err.code()} {err.details()} {err.debug_error_string()} {error_info(err)} {err.trailing_metadata()}"


async def test_k4_secrets_from_the_environment_are_never_echoed(tmp_path: pathlib.Path) -> None:
    redis_password = "k4redis" + secrets.token_hex(12)
    secrets_key = base64.b64encode(os.urandom(32)).decode()
    egress_token = "k4-egress-" + secrets.token_hex(12)
    egress_file = tmp_path / "egress.json"
    egress_file.write_text(
        json.dumps(
            {
                "credentials": [
                    {
                        "plugin_id": "k4-plugin",
                        "domain": "api.example.com",
                        "header": "Authorization",
                        "value_env": "K4_TOKEN",
                    }
                ]
            }
        )
    )
    canaries = {"redis password": redis_password, "secrets key": secrets_key, "egress credential": egress_token}
    seen: dict[str, str] = {}

    with redis_running(tmp_path / "redis", password=redis_password) as redis_server:
        assert redis_password in redis_server.url
        env = clean_env(
            VIVIFIED_REDIS_URL=redis_server.url,
            VIVIFIED_SECRETS_KEY=secrets_key,
            VIVIFIED_EGRESS_CONFIG=str(egress_file),
            K4_TOKEN=egress_token,
        )
        with core_running(tmp_path / "data", "--heartbeat-interval", "1", env=env) as core:
            health: list[str] = []
            async with bootstrap_channel(core) as channel:
                health.append(
                    str(await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10))
                )
            async with operator_channel(core) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                health.append(str(reply))
            seen["health"] = "\n".join(health)

            errors: list[grpc.aio.AioRpcError] = []
            async with bootstrap_channel(core) as channel:
                for metadata in ((), (("authorization", f"Bearer {secrets_key}"),), (("x-api-key", egress_token),)):
                    try:
                        await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                            admin_pb.ListPluginsRequest(), metadata=metadata, timeout=10
                        )
                    except grpc.aio.AioRpcError as err:
                        errors.append(err)
            plugin = await admitted_plugin(core, "k4-plugin")
            async with plugin_channel(core, plugin) as channel:
                for url in ("https://api.example.com/v1", "http://127.0.0.1:1/"):  # undeclared host, internal address
                    try:
                        await egress_pb2_grpc.EgressProxyServiceStub(channel).Fetch(
                            egress_pb2.FetchRequest(method="GET", url=url), timeout=10
                        )
                    except grpc.aio.AioRpcError as err:
                        errors.append(err)
            assert len(errors) == 5 and all(e.code() != grpc.StatusCode.OK for e in errors)
            seen["error details"] = "\n".join(_described(e) for e in errors)
            with urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=10) as response:
                seen["metrics"] = response.read().decode()
            shown = run_vivified("config", "show", "--data-dir", str(core.data_dir), env=env)
            assert shown.returncode == 0, shown.stderr
            assert "redis_url" in shown.stdout and "secrets_key" in shown.stdout
            seen["config show"] = shown.stdout + shown.stderr
        seen["core log"] = core.log()

    # A core that refuses to start says why without the secrets it was given.
    dead = clean_env(
        VIVIFIED_REDIS_URL=f"redis://:{redis_password}@127.0.0.1:1/0",
        VIVIFIED_SECRETS_KEY=secrets_key,
        VIVIFIED_EGRESS_CONFIG=str(egress_file),
        K4_TOKEN=egress_token,
    )
    refused = run_vivified(
        "core",
        "--data-dir",
        str(tmp_path / "refused"),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        env=dead,
        timeout=60,
    )
    assert refused.returncode != 0 and "redis at 127.0.0.1:1" in refused.stderr, refused.stderr
    seen["refused start"] = refused.stdout + refused.stderr

    leaks = [f"{name} in {place}" for name, value in canaries.items() for place, text in seen.items() if value in text]
    assert leaks == []
