"""A plugin's own configuration, as administrators set it on the core.

The keys are those the plugin's manifest declares under `config`; values are
text as their type writes them (`25`, `true`), secrets in clear (only the
owning plugin ever receives them — keep them out of logs).

Example::

    config = await runtime.config()
    port = config.get_int("smtp_port")
    password = config["smtp_password"]

    async for config in runtime.watch_config():   # now, then after every change
        mailer.reconfigure(host=config["smtp_host"], use_tls=config.get_bool("use_tls"))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import MappingProxyType

import grpc

from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.sdk._errors import from_rpc_error

_UNSET = config_pb2.CONFIG_VALUE_SOURCE_UNSET
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class PluginConfig(Mapping[str, str]):
    """Key → value for every declared key that has a value (set or default).
    `missing_keys` lists required keys nobody has set yet; `sources` maps each
    key to `default` or `admin`. Read-only: a change arrives as a new object."""

    __slots__ = ("_missing_keys", "_sources", "_values")

    def __init__(
        self,
        values: Mapping[str, str],
        missing_keys: tuple[str, ...] = (),
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self._values = dict(values)
        self._missing_keys = tuple(missing_keys)
        self._sources = dict(sources or {})

    @property
    def missing_keys(self) -> tuple[str, ...]:
        return self._missing_keys

    @property
    def sources(self) -> Mapping[str, str]:
        return MappingProxyType(self._sources)

    @classmethod
    def from_message(cls, reply: config_pb2.GetMyConfigResponse) -> PluginConfig:
        present = [v for v in reply.values if v.source != _UNSET]
        return cls(
            values={v.key: v.value for v in present},
            missing_keys=tuple(reply.missing_keys),
            sources={
                v.key: config_pb2.ConfigValueSource.Name(v.source).removeprefix("CONFIG_VALUE_SOURCE_").lower()
                for v in present
            },
        )

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        # Secrets are values too: never print them.
        return f"PluginConfig(keys={sorted(self._values)}, missing_keys={list(self.missing_keys)})"

    def get_int(self, key: str) -> int:
        """The value of an `int` key (the core has already checked it parses)."""
        return int(self._values[key])

    def get_bool(self, key: str) -> bool:
        """The value of a `bool` key; ValueError for a key of another type."""
        value = self._values[key]
        if value not in ("true", "false"):
            raise ValueError(f"config key {key!r} is not a bool")
        return value == "true"


class ConfigClient:
    """GetMyConfig and WatchMyConfig on the current channel to the core."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel]) -> None:
        self._channel = channel

    async def get(self, timeout: float | None) -> PluginConfig:
        stub = config_pb2_grpc.ConfigServiceStub(self._channel())
        try:
            reply = await stub.GetMyConfig(config_pb2.GetMyConfigRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        return PluginConfig.from_message(reply)

    async def watch(self, retry_seconds: float) -> AsyncIterator[PluginConfig]:
        """Yield the configuration now and after each change. A stream broken
        by a certificate renewal or a core restart is opened again on the
        then-current channel (the core sends the full configuration first, so
        nothing is missed; the same configuration may come twice)."""
        while True:
            call = config_pb2_grpc.ConfigServiceStub(self._channel()).WatchMyConfig(config_pb2.WatchMyConfigRequest())
            try:
                async for reply in call:
                    yield PluginConfig.from_message(reply.config)
            except grpc.aio.AioRpcError as err:
                if err.code() not in _RESUMABLE:
                    raise from_rpc_error(err) from None
            finally:
                call.cancel()
            await asyncio.sleep(retry_seconds)
