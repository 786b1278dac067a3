"""The one error every manifest problem becomes, and safe display of bad input."""

from __future__ import annotations

from vivified.core.errors import InvalidArgument

REASON = "MANIFEST_INVALID"
DOMAIN = "vivified.registry"


def manifest_invalid(message: str, **metadata: str) -> InvalidArgument:
    """Build the error for a manifest problem; the message says what to fix,
    `metadata` (ErrorInfo) names the field and value where that helps."""
    return InvalidArgument(message, reason=REASON, domain=DOMAIN, metadata=metadata)


def show(value: object, limit: int = 80) -> str:
    """Render untrusted input for an error message.

    `ascii()` escapes NUL, bidi overrides and homoglyphs, so what a person
    reads is what was sent; the cut keeps a huge value out of logs.
    """
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
