"""C8's time box with an injected clock: an activation lasts
`break_glass_seconds`, then its session is refused (it cannot break glass
again), a new session can; an activation that cannot be announced (audit or
alert failing) grants nothing. The real path is in test_break_glass_e2e.py."""

from __future__ import annotations

import pytest

from vivified.core.clock import ManualClock
from vivified.core.errors import PermissionDenied
from vivified.core.identity import EMERGENCY_TRAITS, Activation, BreakGlass, IdentityConfig

pytestmark = pytest.mark.asyncio
HOLDER = frozenset({"break_glass", "audit_required", "viewer"})
REASON = "code blue, need the chart"


def _glass(clock: ManualClock, announced: list[Activation], *, fail: bool = False) -> BreakGlass:
    async def announce(activation: Activation) -> None:
        if fail:
            raise RuntimeError("audit log unavailable")
        announced.append(activation)

    return BreakGlass(clock, seconds=IdentityConfig().break_glass_seconds, announce=announce)


async def _refusal(glass: BreakGlass, session: str, traits: frozenset[str] = HOLDER, header: str = REASON) -> str:
    with pytest.raises(PermissionDenied) as caught:
        await glass.elevate(user_id="usr_1", session_id=session, traits=traits, header=header)
    assert caught.value.metadata == {"rule_id": "break-glass"}
    return caught.value.reason


async def test_c8_the_window_is_time_boxed_and_cannot_be_reopened_by_its_session() -> None:
    clock, announced = ManualClock(), []
    glass = _glass(clock, announced)
    traits, first = await glass.elevate(user_id="usr_1", session_id="s1", traits=HOLDER, header=REASON)
    assert traits == HOLDER | EMERGENCY_TRAITS and announced == [first]
    assert first.expires_at - first.started_at == 900

    clock.advance(899)
    _, again = await glass.elevate(user_id="usr_1", session_id="s1", traits=HOLDER, header="still the same patient")
    assert again == first and len(announced) == 1  # one activation, one announcement
    clock.advance(1)
    assert await _refusal(glass, "s1") == "BREAK_GLASS_EXPIRED"
    clock.advance(3600)
    assert await _refusal(glass, "s1") == "BREAK_GLASS_EXPIRED"  # never reopened by the same session

    _, fresh = await glass.elevate(user_id="usr_1", session_id="s2", traits=HOLDER, header=REASON)
    assert fresh.activation_id != first.activation_id and announced == [first, fresh]


async def test_c8_refusals_and_a_failed_announcement_grant_nothing() -> None:
    clock, announced = ManualClock(), []
    glass = _glass(clock, announced)
    assert await _refusal(glass, "s1", traits=frozenset({"viewer"})) == "BREAK_GLASS_NOT_ALLOWED"
    assert await _refusal(glass, "", traits=HOLDER) == "BREAK_GLASS_NOT_ALLOWED"  # an API key: no session
    for weak in ("", "too short", "tab\tinside reason", "naïve reasoning text", "y" * 501):
        assert await _refusal(glass, "s1", header=weak) == "BREAK_GLASS_REASON_REQUIRED"
    assert announced == []

    failing = _glass(clock, announced, fail=True)
    with pytest.raises(RuntimeError):
        await failing.elevate(user_id="usr_1", session_id="s1", traits=HOLDER, header=REASON)
    with pytest.raises(RuntimeError):  # not remembered as active: tried (and announced) again
        await failing.elevate(user_id="usr_1", session_id="s1", traits=HOLDER, header=REASON)
    assert announced == []
