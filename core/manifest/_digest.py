"""The manifest's canonical digest, and refusal of fields this core does not know.

The operator approves a manifest by its sha256, so the digest must depend
on content only: the same manifest read from YAML, JSON or the wire gives
the same digest, and any changed field gives another. The canonical form is
the proto JSON mapping with proto field names, sorted keys, no whitespace
and ASCII escapes. MessageToDict omits default scalars and empty lists but
keeps an empty sub-message that was set (`security: {}`), and proto keeps
that presence across the wire; such empty mappings are pruned, so a file
with `security: {}` and a message built without `security` share a digest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from vivified.core.manifest._problem import manifest_invalid
from vivified.manifest.v1.manifest_pb2 import PluginManifest


def _prune_empty(value: dict[str, Any]) -> dict[str, Any]:
    pruned = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _prune_empty(item)
            if not item:
                continue
        pruned[key] = item
    return pruned


def canonical_json(manifest: PluginManifest) -> str:
    """The canonical text the digest is taken over."""
    return json.dumps(
        _prune_empty(MessageToDict(manifest, preserving_proto_field_name=True)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )


def manifest_sha256(manifest: PluginManifest) -> str:
    """Hex sha256 of the canonical JSON form."""
    return hashlib.sha256(canonical_json(manifest).encode("ascii")).hexdigest()


def _unknown_numbers(message: Message, path: str) -> list[str]:
    unknown = UnknownFieldSet(message)
    found = [f"{path or 'manifest'} field {unknown[i].field_number}" for i in range(len(unknown))]
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        child = f"{path}.{field.name}" if path else field.name
        if field.is_repeated:
            for index, item in enumerate(value):
                found += _unknown_numbers(item, f"{child}[{index}]")
        else:
            found += _unknown_numbers(value, child)
    return found


def reject_unknown_fields(manifest: Message) -> None:
    """Refuse a message that carries wire fields this core's schema lacks.

    Such fields would be invisible to validation yet change the bytes a
    newer reader sees, and they are dropped by the canonical form, so two
    different wire manifests could share one approved digest.
    """
    found = _unknown_numbers(manifest, "")
    if found:
        raise manifest_invalid(f"manifest carries unknown fields: {', '.join(found[:10])}")
