"""Read the plugin's manifest file into a `PluginManifest`.

The SDK only loads the file and maps it onto the message (unknown keys are
refused, so a typo fails here rather than at the core); the core validates
the content and compares it with the approved manifest's sha256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.sdk._errors import ConfigurationError

# The core refuses larger manifests; failing here gives the clearer message.
MAX_MANIFEST_BYTES = 64 * 1024


def _parse(text: str, source: str) -> Any:
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{source}: not valid YAML or JSON: {exc}", reason="MANIFEST_INVALID") from None


def load_manifest(path: Path) -> PluginManifest:
    """Load a YAML or JSON manifest file.

    Raises `ConfigurationError` (reason `MANIFEST_INVALID`) when the file cannot
    be read, is too large, is not a mapping, or has an unknown key or a value of
    the wrong type.

    Example::

        manifest = load_manifest(Path("plugins/example_echo/manifest.yaml"))
        assert manifest.id == "example-echo"
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read manifest: {exc.strerror}", reason="MANIFEST_INVALID") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ConfigurationError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES} bytes", reason="MANIFEST_INVALID")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: manifest is not UTF-8", reason="MANIFEST_INVALID") from None
    parsed = _parse(text, str(path))
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"{path}: the manifest must be a mapping of keys to values", reason="MANIFEST_INVALID")
    try:
        return json_format.ParseDict(parsed, PluginManifest(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ConfigurationError(f"{path}: {exc}", reason="MANIFEST_INVALID") from None
