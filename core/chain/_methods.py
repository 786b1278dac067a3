"""What the chain needs to know of one method beyond its name.

The facts are declared per binding in `vivified.core.services` (the one place
a service is added) and handed to the chain as a table keyed by full method
name (`/package.Service/Method`); the layers read `Call.facts` and never test
method names themselves. A method the table does not name (a plugin's
contract method forwarded by the core, a test's service) has the defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ResourceOf = Callable[[Any], str | None]
"""The object a request names (`plugin/<id>`), or None when it names none."""


@dataclass(frozen=True)
class MethodFacts:
    """How the chain audits one method.

    By default a unary call is recorded when it has its outcome and a stream
    when it opens, and the record's resource is what the handler annotated
    (`annotate(resource=...)`) or the service name."""

    audit_at_end: bool = False
    """A stream recorded at its end like a unary call, because its handler
    decides (and annotates) only after reading the request; such a handler may
    also record the opening itself (`AuditRecorder.record_stream_open`)."""
    record_when_cancelled: bool = False
    """A stream audited at its end that is recorded even when the caller
    cancels it (it moved data: the record carries what moved so far)."""
    unaudited_when_ok: bool = False
    """A liveness call answered OK is counted in metrics, not audited one by
    one; refused or failed ones are still audited, each one."""
    resource: ResourceOf | None = None
    """Reads the audited resource from the request, before any annotation."""


DEFAULT_FACTS = MethodFacts()

MethodTable = Mapping[str, MethodFacts]
"""Facts by full method name, `/package.Service/Method`."""
