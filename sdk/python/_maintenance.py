"""The two background duties of a registered plugin: heartbeats and renewal.

Both run until cancelled. Errors are logged once per change of state (not on
every beat) and retried; only the core's definitive answers end the plugin:
`PLUGIN_REVOKED` / `CERTIFICATE_REVOKED` stop it cleanly (the operator ended
it), an expired certificate stops it with an error (it cannot come back
without a new join token, so a supervisor should restart it)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from vivified.registry.v1 import registry_pb2
from vivified.sdk._errors import VivifiedSDKError
from vivified.sdk._identity import IssuedCertificate

_log = logging.getLogger("vivified.sdk")

# Reasons after which nothing the plugin does can help.
FINAL_REASONS = frozenset({"PLUGIN_REVOKED", "CERTIFICATE_REVOKED"})
MAX_RETRY_DELAY = 30.0
MIN_RENEW_DELAY = 0.5

Sleep = Callable[[float], Awaitable[None]]
StopRequest = Callable[[str, VivifiedSDKError | None], None]


class RegistryCalls(Protocol):
    async def heartbeat(self) -> registry_pb2.HeartbeatResponse: ...

    async def renew(self) -> IssuedCertificate: ...


class _StateLog:
    """Logs a failure when its reason differs from the previous outcome's."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last: str | None = None

    def ok(self) -> None:
        if self._last is not None:
            _log.info("%s works again", self._what)
        self._last = None

    def failed(self, error: VivifiedSDKError) -> None:
        key = f"{error.code.name}/{error.reason}"
        if key != self._last:
            _log.warning("%s failed: %s", self._what, error)
        self._last = key


async def heartbeat_forever(calls: RegistryCalls, interval: float, *, sleep: Sleep, request_stop: StopRequest) -> None:
    """Heartbeat every `interval` seconds (the core may change it in its reply).

    `PLUGIN_DISABLED` and transport errors are retried at the same pace: an
    operator may enable the plugin again, and the core may come back."""
    state = _StateLog("heartbeat")
    while True:
        try:
            reply = await calls.heartbeat()
        except VivifiedSDKError as error:
            if error.reason in FINAL_REASONS:
                _log.warning("the core ended this plugin's registration: %s", error)
                request_stop(error.reason.lower(), None)
                return
            state.failed(error)
        else:
            state.ok()
            if reply.heartbeat_interval_seconds > 0:
                interval = float(reply.heartbeat_interval_seconds)
        await sleep(max(interval, 0.1))


async def renew_forever(
    calls: RegistryCalls,
    current: Callable[[], IssuedCertificate],
    install: Callable[[IssuedCertificate], None],
    *,
    fraction: float,
    clock: Callable[[], dt.datetime],
    sleep: Sleep,
    request_stop: StopRequest,
) -> None:
    """Renew at `fraction` of each certificate's lifetime; retry failures with
    exponential backoff until the certificate expires."""
    state = _StateLog("certificate renewal")
    while True:
        due = current().renew_time(fraction)
        await sleep(max((due - clock()).total_seconds(), MIN_RENEW_DELAY))
        delay = 1.0
        while True:
            try:
                issued = await calls.renew()
            except VivifiedSDKError as error:
                if error.reason in FINAL_REASONS:
                    _log.warning("the core refused to renew the certificate: %s", error)
                    request_stop(error.reason.lower(), None)
                    return
                state.failed(error)
                remaining = (current().not_after - clock()).total_seconds()
                if remaining <= 0:
                    request_stop(
                        "certificate expired",
                        VivifiedSDKError(
                            "the plugin's certificate expired before it could be renewed; restart with a new join token",
                            reason="CERTIFICATE_EXPIRED",
                            domain="vivified.sdk",
                        ),
                    )
                    return
                await sleep(min(delay, remaining))
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            state.ok()
            install(issued)
            _log.info("certificate renewed; valid until %s", issued.not_after.isoformat())
            break
