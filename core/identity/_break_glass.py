"""Break-glass: emergency access for a signed-in user, with a reason, for a
short time, loudly.

A user whose roles give the `break_glass` trait (role `break_glass`; MFA is
mandatory for it) may send `x-vivified-break-glass: <reason>` with a call
made with their access token. The first such call of a session activates
break-glass for that session: one audit record `identity.break_glass.activate`
with severity `critical`, the reason and the end of the time box, and a
`SecurityAlert` (kind `break_glass_activated`, severity critical) on the event
bus — both before the call proceeds; if either cannot be written the call
fails. Until the time box ends (`IdentityConfig.break_glass_seconds`), each
call of that session that carries the header holds the emergency traits
(`EMERGENCY_TRAITS`) on top of the user's own, and its audit record names the
activation. A call without the header has the user's own traits only.

Refused, each with PERMISSION_DENIED, rule `break-glass` and one audit
record: an API key (no session, no second factor), a user without the
`break_glass` trait (BREAK_GLASS_NOT_ALLOWED), a missing, short, long or
non-printable reason (BREAK_GLASS_REASON_REQUIRED), and any use after the
time box (BREAK_GLASS_EXPIRED: the session cannot break glass again; sign in
again for a new session).

Activations live in the memory of the core replica that made them: a restart
ends them, and another replica knows none of them (there the header starts a
new activation, audited and alerted again). A plugin the user calls receives
a delegation token with the elevated traits, but a further hop re-checks the
session's own traits, so the elevation does not travel beyond the first hop.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vivified.core.clock import Clock
from vivified.core.errors import PermissionDenied

BREAK_GLASS_HEADER = "x-vivified-break-glass"
BREAK_GLASS_TRAIT = "break_glass"
BREAK_GLASS_RULE = "break-glass"
EMERGENCY_TRAITS = frozenset({"handles_phi", "handles_pii", "audit_required"})
"""What breaking glass adds: access to classified patient and personal data."""
MIN_REASON_CHARS = 10
MAX_REASON_CHARS = 500
_MAX_REMEMBERED = 10_000
_DOMAIN = "vivified.identity"


@dataclass(frozen=True)
class Activation:
    """One session's break-glass window."""

    activation_id: str
    user_id: str
    session_id: str
    reason: str
    started_at: int
    expires_at: int


Announce = Callable[[Activation], Awaitable[None]]
"""Writes the high-severity audit record and raises the SecurityAlert of an
activation; returns once both are durable (raises otherwise)."""


def _refused(message: str, reason: str) -> PermissionDenied:
    return PermissionDenied(message, reason=reason, domain=_DOMAIN, metadata={"rule_id": BREAK_GLASS_RULE})


def _checked_reason(value: str) -> str:
    reason = value.strip()
    if not (MIN_REASON_CHARS <= len(reason) <= MAX_REASON_CHARS and reason.isascii() and reason.isprintable()):
        raise _refused(
            f"break-glass needs a reason of {MIN_REASON_CHARS} to {MAX_REASON_CHARS} printable ASCII characters "
            f"in {BREAK_GLASS_HEADER}",
            "BREAK_GLASS_REASON_REQUIRED",
        )
    return reason


class BreakGlass:
    """Activations by session, and the decision for each call that asks."""

    def __init__(self, clock: Clock, *, seconds: int, announce: Announce) -> None:
        self._clock = clock
        self._seconds = seconds
        self._announce = announce
        self._by_session: OrderedDict[str, Activation] = OrderedDict()

    async def elevate(
        self, *, user_id: str, session_id: str | None, traits: frozenset[str], header: str
    ) -> tuple[frozenset[str], Activation]:
        """The traits of a call that sent `header`, and its activation; raises
        PermissionDenied (rule `break-glass`) when it may not break glass."""
        if not session_id:
            raise _refused("break-glass needs a signed-in session (an API key cannot)", "BREAK_GLASS_NOT_ALLOWED")
        if BREAK_GLASS_TRAIT not in traits:
            raise _refused("this user may not break glass (no break_glass role)", "BREAK_GLASS_NOT_ALLOWED")
        reason = _checked_reason(header)
        now = int(self._clock.now().timestamp())
        activation = self._by_session.get(session_id)
        if activation is None:
            activation = Activation(
                activation_id="bg_" + secrets.token_hex(12),
                user_id=user_id,
                session_id=session_id,
                reason=reason,
                started_at=now,
                expires_at=now + self._seconds,
            )
            await self._announce(activation)  # audited and alerted before any elevated call proceeds
            self._by_session[session_id] = activation
            if len(self._by_session) > _MAX_REMEMBERED:
                self._by_session.popitem(last=False)
        if activation.user_id != user_id or now >= activation.expires_at:
            raise _refused(
                "this session's break-glass window has ended; sign in again to break glass anew",
                "BREAK_GLASS_EXPIRED",
            )
        return traits | EMERGENCY_TRAITS, activation
