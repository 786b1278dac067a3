"""`vivified manifest validate FILE [--json]`: check a manifest offline with the
very parser and validator the core runs at approval (same messages, same
reasons). Exit 0 when valid, 1 naming the field of the first problem."""

from __future__ import annotations

import argparse
import json
import pathlib
import re

from vivified.core.errors import VivifiedError
from vivified.core.manifest import load_manifest_file, manifest_sha256, validate_manifest
from vivified.core.traits import TraitCatalogue


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    manifest = sub.add_parser("manifest", help="work with plugin manifests offline")
    verbs = manifest.add_subparsers(dest="verb", required=True)
    validate = verbs.add_parser(
        "validate",
        help="check a manifest exactly as the core does at approval",
        description="Parse and validate a plugin manifest (YAML or JSON) with the core's own rules, "
        "without a running core. Exit 0 when it is valid, 1 with the offending field otherwise.",
    )
    validate.add_argument("manifest", type=pathlib.Path, help="path to the plugin's manifest.yaml or .json")
    validate.add_argument("--json", action="store_true", help="print the verdict as JSON")


_FIELD = re.compile(r"[a-z_][a-z0-9_]*(?:\[[0-9]+\])?(?:\.[a-z_][a-z0-9_]*(?:\[[0-9]+\])?)*")


def _field(message: str) -> str:
    """The key a validator message starts with (`security.allowed_tunnels: ...`), or ""."""
    head, colon, _ = message.partition(": ")
    return head if colon and _FIELD.fullmatch(head) else ""


def run(args: argparse.Namespace, out: list[str]) -> int:
    try:
        manifest = load_manifest_file(args.manifest)
        validate_manifest(manifest, TraitCatalogue.load_default())
    except VivifiedError as exc:
        if args.json:
            out.append(json.dumps({"valid": False, "file": str(args.manifest), "reason": exc.reason,
                                   "field": _field(exc.message), "message": exc.message}))
        else:
            out.append(f"{args.manifest}: invalid [{exc.reason}] {exc.message}")
        return 1
    digest = manifest_sha256(manifest)
    if args.json:
        out.append(json.dumps({"valid": True, "file": str(args.manifest), "plugin_id": manifest.id,
                               "version": manifest.version, "manifest_sha256": digest}))
    else:
        out.append(f"{args.manifest}: valid: {manifest.id} {manifest.version} (sha256 {digest})")
    return 0
