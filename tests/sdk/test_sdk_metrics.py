"""The SDK's RPC duration interceptors against a real grpc.aio server on port
0, read through an in-memory reader: the code each call ended with (returned,
aborted, raised), the target label, and nothing installed when export is off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from vivified.sdk._calls import TARGET_HEADER
from vivified.sdk._metrics import PluginMetrics, RpcDurations, metrics_configured, metrics_from_env


async def _ok(request: bytes, context: Any) -> bytes:
    return request


async def _abort(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return b""


async def _set_code(request: bytes, context: Any) -> bytes:
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    return b""


async def _raise(request: bytes, context: Any) -> bytes:
    raise RuntimeError("bug")


class _Clock:
    """Each reading is 5 ms after the previous one."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.005
        return self.now


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[grpc.aio.Channel, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    metrics = PluginMetrics(
        RpcDurations(meter.create_histogram("rpc.server.duration"), meter.create_histogram("rpc.client.duration")),
        clock=_Clock(),
    )
    server = grpc.aio.server(interceptors=metrics.server_interceptors())
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in {"Ok": _ok, "Abort": _abort, "SetCode": _set_code, "Raise": _raise}.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.v1.TestService", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=metrics.client_interceptors())
    try:
        yield channel, reader
    finally:
        await channel.close()
        await server.stop(0)
        provider.shutdown()


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple[str, int, str], tuple[int, float]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (p.attributes["rpc.method"], p.attributes["rpc.grpc.status_code"], p.attributes.get("vivified.target", "")): (
            p.count,
            p.sum,
        )
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points  # type: ignore[union-attr]
    }


@pytest.mark.asyncio
async def test_each_call_is_timed_on_both_sides_with_the_code_it_ended_with(
    served: tuple[grpc.aio.Channel, InMemoryMetricReader],
) -> None:
    channel, reader = served
    for method in ("Ok", "Abort", "SetCode", "Raise"):
        rpc = channel.unary_unary(f"/test.v1.TestService/{method}")
        try:
            await rpc(b"x", metadata=((TARGET_HEADER, "some-plugin"),), timeout=5)
        except grpc.aio.AioRpcError:
            pass
    codes = {"Ok": 0, "Abort": 5, "SetCode": 9, "Raise": 2}  # OK, NOT_FOUND, FAILED_PRECONDITION, UNKNOWN
    server = _points(reader, "rpc.server.duration")
    assert set(server) == {(m, c, "") for m, c in codes.items()}
    assert all(count == 1 and total == pytest.approx(5.0) for count, total in server.values())  # one step, in ms
    client = _points(reader, "rpc.client.duration")
    assert set(client) == {(m, c, "some-plugin") for m, c in codes.items()}
    assert all(count == 1 for count, _ in client.values())


@pytest.mark.asyncio
async def test_unknown_methods_are_not_recorded(served: tuple[grpc.aio.Channel, InMemoryMetricReader]) -> None:
    channel, reader = served
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await channel.unary_unary("/test.v1.TestService/Nope")(b"", timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert _points(reader, "rpc.server.duration") == {}
    assert set(_points(reader, "rpc.client.duration")) == {("Nope", 12, "")}


def test_off_unless_an_otlp_endpoint_is_configured() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert not metrics_configured({})
    assert metrics_configured(endpoint)
    assert metrics_configured({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4317"})
    assert not metrics_configured({**endpoint, "OTEL_METRICS_EXPORTER": "none"})
    assert not metrics_configured({**endpoint, "OTEL_SDK_DISABLED": "true"})
    off = metrics_from_env({}, lambda: pytest.fail("no resource is built when off"))
    assert off.durations is None and off.server_interceptors() == [] and off.client_interceptors() == []
    off.shutdown()
