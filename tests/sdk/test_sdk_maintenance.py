"""Heartbeat and renewal schedules with an injected clock and sleep: no waiting."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from vivified.registry.v1 import registry_pb2
from vivified.sdk import (
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    VivifiedSDKError,
)
from vivified.sdk._identity import IssuedCertificate
from vivified.sdk._maintenance import heartbeat_forever, renew_forever
from vivified.sdk.testing import LocalCA

pytestmark = pytest.mark.asyncio

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class Enough(Exception):
    """Raised by the fake sleep to end an endless loop."""


class FakeTime:
    def __init__(self, max_sleeps: int = 20) -> None:
        self.now = T0
        self.sleeps: list[float] = []
        self._max = max_sleeps

    def clock(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) > self._max:
            raise Enough
        self.now += dt.timedelta(seconds=seconds)


def certificate(ca: LocalCA, lifetime_s: float) -> IssuedCertificate:
    """A real certificate with notBefore backdated five minutes, as the core issues
    them, received `lifetime_s` seconds before it expires."""
    leaf = ca.issue(
        "p",
        uris=["spiffe://vivified.local/plugin/p"],
        dns_names=[],
        lifetime=dt.timedelta(seconds=lifetime_s),
        backdate=dt.timedelta(minutes=5),
    )
    received_at = leaf.cert.not_valid_after_utc - dt.timedelta(seconds=lifetime_s)
    return IssuedCertificate(chain_pem=leaf.chain_pem, key_pem=leaf.key_pem, leaf=leaf.cert, received_at=received_at)


class Calls:
    def __init__(self, renewals: list[IssuedCertificate | VivifiedSDKError], beats: list[object]) -> None:
        self.renewals = renewals
        self.beats = beats

    async def renew(self) -> IssuedCertificate:
        outcome = self.renewals.pop(0)
        if isinstance(outcome, VivifiedSDKError):
            raise outcome
        return outcome

    async def heartbeat(self) -> registry_pb2.HeartbeatResponse:
        outcome = self.beats.pop(0) if self.beats else registry_pb2.HeartbeatResponse(heartbeat_interval_seconds=7)
        if isinstance(outcome, VivifiedSDKError):
            raise outcome
        assert isinstance(outcome, registry_pb2.HeartbeatResponse)
        return outcome


def busy() -> UnavailableError:
    return UnavailableError("busy", reason="CORE_BUSY")


async def test_renewal_is_due_at_the_fraction_of_the_lifetime_since_receipt() -> None:
    ca = LocalCA()
    first = certificate(ca, 100)
    time = FakeTime(max_sleeps=1)
    time.now = first.received_at
    second = certificate(ca, 100)
    installed: list[IssuedCertificate] = []
    calls = Calls([second], [])
    current = [first]

    def install(issued: IssuedCertificate) -> None:
        installed.append(issued)
        current[0] = issued
        time.now = issued.received_at  # the new certificate arrives "now"

    with pytest.raises(Enough):
        await renew_forever(
            calls,
            lambda: current[0],
            install,
            fraction=0.66,
            clock=time.clock,
            sleep=time.sleep,
            request_stop=lambda *_: pytest.fail("must not stop"),
        )
    # 66 s after receipt, not 66% of the backdated notBefore..notAfter span (which is already past).
    assert time.sleeps[0] == pytest.approx(66, abs=0.01)
    assert installed == [second]
    assert time.sleeps[1] == pytest.approx(66, abs=0.01)


async def test_failed_renewals_back_off_then_stop_at_expiry() -> None:
    ca = LocalCA()
    first = certificate(ca, 20)
    time = FakeTime()
    time.now = first.received_at
    stops: list[tuple[str, VivifiedSDKError | None]] = []
    calls = Calls([busy() for _ in range(10)], [])
    await renew_forever(
        calls,
        lambda: first,
        lambda issued: None,
        fraction=0.5,
        clock=time.clock,
        sleep=time.sleep,
        request_stop=lambda reason, error: stops.append((reason, error)),
    )
    # Due at 10 s; retries after 1, 2, 4 s, then only the 3 s left before expiry.
    assert time.sleeps == pytest.approx([10, 1, 2, 4, 3], abs=0.01)
    ((reason, error),) = stops
    assert reason == "certificate expired" and error is not None and error.reason == "CERTIFICATE_EXPIRED"


async def test_a_revoked_plugin_stops_renewing_cleanly() -> None:
    ca = LocalCA()
    first = certificate(ca, 20)
    time = FakeTime()
    time.now = first.received_at
    stops: list[tuple[str, VivifiedSDKError | None]] = []
    revoked = PermissionDeniedError("revoked", reason="PLUGIN_REVOKED", code=grpc.StatusCode.PERMISSION_DENIED)
    await renew_forever(
        Calls([revoked], []),
        lambda: first,
        lambda issued: None,
        fraction=0.5,
        clock=time.clock,
        sleep=time.sleep,
        request_stop=lambda reason, error: stops.append((reason, error)),
    )
    assert stops == [("plugin_revoked", None)]


async def test_heartbeats_follow_the_cores_interval_and_survive_a_disabled_plugin() -> None:
    time = FakeTime(max_sleeps=4)
    disabled = PermissionDeniedError("disabled", reason="PLUGIN_DISABLED")
    calls = Calls([], [registry_pb2.HeartbeatResponse(heartbeat_interval_seconds=3), disabled, busy()])
    with pytest.raises(Enough):
        await heartbeat_forever(calls, 1.0, sleep=time.sleep, request_stop=lambda *_: pytest.fail("must not stop"))
    # 3 s from the reply, kept through the refusals, then 7 s from the next reply.
    assert time.sleeps == [3.0, 3.0, 3.0, 7.0, 7.0]


async def test_a_revoked_certificate_ends_the_heartbeats() -> None:
    time = FakeTime()
    stops: list[tuple[str, VivifiedSDKError | None]] = []
    revoked = UnauthenticatedError("revoked", reason="CERTIFICATE_REVOKED")
    await heartbeat_forever(
        Calls([], [revoked]), 1.0, sleep=time.sleep, request_stop=lambda reason, error: stops.append((reason, error))
    )
    assert stops == [("certificate_revoked", None)] and time.sleeps == []
