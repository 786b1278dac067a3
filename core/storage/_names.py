"""Object names and the safe ids they map to (catalogue F5).

A name is what a plugin calls its object; it never becomes a path. It is 1 to
256 bytes of ASCII letters, digits and `._~-`, in `/`-separated segments that
each start with a letter or digit, so `..`, absolute paths, NUL, control
characters and Unicode look-alikes (normalisation twins) are refused rather
than mapped. What reaches a disk or the audit log is the object id: a hash
of owner and name.
"""

from __future__ import annotations

import hashlib
import re

from vivified.core.storage._errors import name_invalid

NAME_MAX_BYTES = 256
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")
_PLUGIN_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")


def check_name(name: str) -> str:
    """`name`, or OBJECT_NAME_INVALID saying what is wrong with it."""
    if not name:
        raise name_invalid("it is empty")
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) > NAME_MAX_BYTES:
        raise name_invalid(f"it has {len(encoded)} bytes; at most {NAME_MAX_BYTES} are allowed")
    if not name.isascii():
        raise name_invalid("only ASCII letters, digits and ._~- are allowed (no look-alike Unicode)")
    if "\x00" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise name_invalid("it contains a NUL or control character")
    if name.startswith("/"):
        raise name_invalid("it starts with '/': names are relative, never paths")
    for segment in name.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise name_invalid(
                f"segment {segment!r} must start with a letter or digit and use only letters, digits and ._~-"
            )
    return name


def check_owner(plugin_id: str) -> str:
    if not _PLUGIN_ID.fullmatch(plugin_id):
        raise name_invalid(f"owner {plugin_id!r} is not a plugin id")
    return plugin_id


def object_id(owner: str, name: str) -> str:
    """The id under which `owner`'s object `name` is stored and audited."""
    return hashlib.sha256(b"vivified-object-id\x00" + owner.encode() + b"\x00" + name.encode()).hexdigest()[:32]
