"""Audit records and their hash: the one canonical serialisation both the
writer and the verifier use, so the two can never disagree.

The hash of a record is the sha256 (hex) of compact JSON with sorted keys over
every column except `hash` itself — including `seq` and `prev_hash`, which is
what chains the records: changing, removing or reordering one breaks every
link after it. Time is serialised as ISO-8601 UTC with microseconds and `Z`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first record (seq 1)."""

DECISIONS = frozenset({"allow", "deny"})
MAX_DETAIL_CHARS = 4096
"""Detail is a small annotation (ids, counts), never a body: a large value is
refused rather than truncated so nothing is silently lost."""

_REASON = re.compile(r"^(?:[A-Z][A-Z0-9_]{0,63})?$")
_OUTCOME = re.compile(r"^[A-Z][A-Z_]{0,31}$")


def format_time(value: dt.datetime) -> str:
    """ISO-8601 UTC with microseconds and `Z`, e.g. `2030-01-01T00:00:00.000000Z`."""
    if value.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    when = value.astimezone(dt.UTC)
    if when.year < 1000:  # strftime does not pad such years; keep its form
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as that strftime, at a third of its cost.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - %-formatting is the cheap path here
        when.year,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
        when.microsecond,
    )


# One encoder for every call: `json.dumps` with options builds a new encoder
# each time, which costs about as much as the encoding itself.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_json(value: Mapping[str, object]) -> str:
    """Compact JSON with sorted keys; ASCII-only so the bytes never depend on
    how a reader decodes them."""
    return _CANONICAL.encode(value)


def _canonical_record(fields: Mapping[str, object], time: dt.datetime) -> str:
    """The hashed text of a record from its `fields` (every column but `hash`)."""
    return canonical_json({**fields, "time": format_time(time)})


_RECORD_KEYS = (
    "action",
    "actor",
    "decision",
    "detail",
    "outcome",
    "prev_hash",
    "reason",
    "resource",
    "rule_id",
    "seq",
    "time",
    "trace_id",
)
"""The hashed keys in sorted order (`canonical_json` sorts them)."""
_quote = json.encoder.encode_basestring_ascii  # what the encoder uses for each str


_TEXT_KEYS = tuple(key for key in _RECORD_KEYS if key not in ("detail", "seq", "time"))
_FIELD_SET = frozenset(_RECORD_KEYS)


def _canonical_stored(fields: Mapping[str, Any], time: dt.datetime) -> str:
    """`_canonical_record(fields, time)` for the writer's own, fixed field set,
    written out directly: the same text (`test_audit_chain` compares the two),
    without the generic encoder's key sort and dispatch on every record.
    Anything unexpected takes the generic path."""
    detail = fields.get("detail")
    seq = fields.get("seq")
    if (
        fields.keys() != _FIELD_SET
        or type(seq) is not int
        or not (detail is None or type(detail) is str)
        or any(type(fields[key]) is not str for key in _TEXT_KEYS)
    ):
        return _canonical_record(fields, time)
    return (
        f'{{"action":{_quote(fields["action"])},"actor":{_quote(fields["actor"])},'
        f'"decision":{_quote(fields["decision"])},"detail":{"null" if detail is None else _quote(detail)},'
        f'"outcome":{_quote(fields["outcome"])},"prev_hash":{_quote(fields["prev_hash"])},'
        f'"reason":{_quote(fields["reason"])},"resource":{_quote(fields["resource"])},'
        f'"rule_id":{_quote(fields["rule_id"])},"seq":{seq},'
        f'"time":{_quote(format_time(time))},"trace_id":{_quote(fields["trace_id"])}}}'
    )


def _hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """What the caller asks to be recorded; the log adds seq, time and hashes.

    `actor` is e.g. `plugin:email`, `operator:admin`, `anonymous:127.0.0.1`;
    `action` the full gRPC method or a verb such as `plugin.approve`;
    `decision` is `allow` or `deny`; `reason` a stable UPPER_SNAKE reason or
    empty; `outcome` a gRPC status code name (`OK`, `PERMISSION_DENIED`).
    `detail` holds small string annotations — never request bodies or secrets.
    """

    actor: str
    action: str
    resource: str = ""
    decision: str = "allow"
    reason: str = ""
    rule_id: str = ""
    outcome: str = "OK"
    trace_id: str = ""
    detail: Mapping[str, str] | None = None
    _detail_text: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Explicit checks, not asserts: a malformed record must never reach
        # the chain, even under `python -O`.
        if not self.actor or not self.action:
            raise ValueError("audit record needs an actor and an action")
        if self.decision not in DECISIONS:
            raise ValueError(f"audit decision must be allow or deny, not {self.decision!r}")
        if not _REASON.match(self.reason):
            raise ValueError(f"audit reason must be UPPER_SNAKE or empty, not {self.reason!r}")
        if not _OUTCOME.match(self.outcome):
            raise ValueError(f"audit outcome must be a status code name, not {self.outcome!r}")
        if self.detail is not None:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.detail.items()):
                raise ValueError("audit detail must map strings to strings")
            # Freeze a private copy so a caller mutating its dict later cannot
            # change what gets hashed.
            object.__setattr__(self, "detail", dict(self.detail))
            object.__setattr__(self, "_detail_text", canonical_json(self.detail))
            if len(self.detail_text() or "") > MAX_DETAIL_CHARS:
                raise ValueError(f"audit detail exceeds {MAX_DETAIL_CHARS} characters")

    def detail_text(self) -> str | None:
        """The detail as stored: canonical JSON, or None when absent."""
        return self._detail_text


@dataclasses.dataclass(frozen=True)
class StoredRecord:
    """One row of the audit table. `detail` is the stored JSON text (or None)."""

    seq: int
    time: dt.datetime
    actor: str
    action: str
    resource: str
    decision: str
    reason: str
    rule_id: str
    outcome: str
    trace_id: str
    detail: str | None
    prev_hash: str
    hash: str

    @classmethod
    def chain(cls, record: AuditRecord, *, seq: int, time: dt.datetime, prev_hash: str) -> StoredRecord:
        """The stored form of `record` placed after `prev_hash` at `seq`."""
        when = time.astimezone(dt.UTC)
        fields: dict[str, Any] = {
            "seq": seq,
            "time": when,
            "actor": record.actor,
            "action": record.action,
            "resource": record.resource,
            "decision": record.decision,
            "reason": record.reason,
            "rule_id": record.rule_id,
            "outcome": record.outcome,
            "trace_id": record.trace_id,
            "detail": record.detail_text(),
            "prev_hash": prev_hash,
        }
        # Hashed from the same mapping the record is built from. Built the
        # way the generated `__init__` would (it only stores each field; the
        # class has no `__post_init__`), without its thirteen
        # `object.__setattr__` calls: the writer makes one per record.
        fields["hash"] = _hash_text(_canonical_stored(fields, when))
        stored = object.__new__(cls)
        stored.__dict__.update(fields)
        return stored

    @classmethod
    def from_row(cls, row: Mapping[Any, object]) -> StoredRecord:
        """Build from a table row; SQLite returns naive datetimes, which the
        writer stored as UTC."""
        when = row["time"]
        seq = row["seq"]
        if not isinstance(when, dt.datetime) or not isinstance(seq, int):
            raise TypeError(f"audit row {seq!r} has no valid seq or time")
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        detail = row["detail"]
        return cls(
            seq=seq,
            time=when,
            actor=str(row["actor"]),
            action=str(row["action"]),
            resource=str(row["resource"]),
            decision=str(row["decision"]),
            reason=str(row["reason"]),
            rule_id=str(row["rule_id"]),
            outcome=str(row["outcome"]),
            trace_id=str(row["trace_id"]),
            detail=None if detail is None else str(detail),
            prev_hash=str(row["prev_hash"]),
            hash=str(row["hash"]),
        )

    def canonical(self) -> str:
        """The serialisation the hash covers: every field except `hash`."""
        fields = self.as_row()
        del fields["hash"]
        return _canonical_record(fields, self.time)

    def compute_hash(self) -> str:
        """sha256 hex of `canonical()`."""
        return _hash_text(self.canonical())

    def as_row(self) -> dict[str, object]:
        """Column values for an INSERT."""
        return dict(vars(self))
