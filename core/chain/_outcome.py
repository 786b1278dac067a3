"""What a call came to: the layers raise it (`Denied`) or return it, and the
audit recorder writes it, once.

`Outcome` is the part of an audit record a layer decides (allow or deny,
reason, rule, the status the caller gets). `Denied` is how a layer refuses a
call: the error boundary records the denial and then sends its status, so
no layer writes a record or aborts by itself. `Trail` is the recorder's own
note of a call's settled outcome and whether it was written."""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class Outcome:
    """One call's result as its audit record states it."""

    outcome: str
    """The record's outcome: a status code name, or `STREAM_OPENED`."""
    decision: str
    """`allow` or `deny`."""
    reason: str = ""
    rule_id: str = ""
    code: grpc.StatusCode | None = None
    """The status the call ended with; None while a stream is open."""


class Denied(Exception):
    """A layer's refusal of the call: status code, message shown to the
    caller, stable reason, the rule that refused, the error domain.

    `closure`: an open stream the core ends (its opening was recorded; the
    closure is a decision of its own and gets its own record). `record_after`:
    send the status at once and write the record after, for when the audit
    log may sit on the very database that cannot be reached (the registry
    went stale), where waiting for the record would keep the access open."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str,
        rule_id: str,
        domain: str,
        closure: bool = False,
        record_after: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.rule_id = rule_id
        self.domain = domain
        self.closure = closure
        self.record_after = record_after

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.code.name, "deny", self.reason, self.rule_id, self.code)


@dataclass
class Trail:
    """The recorder's note on one call."""

    settled: Outcome
    written: bool = False
