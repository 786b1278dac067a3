"""What a `google.protobuf.Any` payload's `type_url` must be, and what is wrong
with one that is not: `type.googleapis.com/` followed by the message's full name."""

from __future__ import annotations

TYPE_URL_PREFIX = "type.googleapis.com/"
_SHOWN = 200


def type_url_problem(type_url: str, expected: str) -> str | None:
    """None when `type_url` is `type.googleapis.com/<expected>`; otherwise a
    sentence saying what is wrong with it (for an INVALID_ARGUMENT message)."""
    wanted = TYPE_URL_PREFIX + expected
    if type_url == wanted:
        return None
    if not type_url:
        return f"type_url is empty; it must be {wanted!r}"
    shown = repr(type_url[:_SHOWN])
    if not type_url.startswith(TYPE_URL_PREFIX):
        if type_url.rpartition("/")[2] == expected:
            return f"type_url {shown} lacks the {TYPE_URL_PREFIX!r} prefix; it must be {wanted!r}"
        return f"type_url {shown} must be {TYPE_URL_PREFIX!r} followed by a message's full name, here {wanted!r}"
    return f"type_url names {type_url[len(TYPE_URL_PREFIX) :][:_SHOWN]!r}, but {expected!r} is expected here"
