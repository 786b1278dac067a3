"""`vivified manifest validate FILE [--json]`: check a plugin manifest offline
with exactly the checks the core runs when an operator approves it (parse,
unknown fields, `validate_manifest` against the default trait catalogue), so
the messages and reasons are the core's own. Exit 0 when it would be
accepted, 1 on the first problem, whose message names the field."""

from __future__ import annotations

import argparse
import json
import pathlib
import re

from vivified.core.errors import VivifiedError
from vivified.core.manifest import load_manifest_file, manifest_sha256, reject_unknown_fields, validate_manifest
from vivified.core.traits import TraitCatalogue

_FIELD = re.compile(r"^([a-z_]+(?:\[[0-9]+\])?(?:\.[a-z_]+(?:\[[0-9]+\])?)*):")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    manifest = sub.add_parser("manifest", help="work with plugin manifests offline")
    verbs = manifest.add_subparsers(dest="verb", required=True)
    validate = verbs.add_parser(
        "validate",
        help="check a manifest as the core does at approval (exit 1 on a problem)",
        description="Check a plugin manifest (YAML or JSON) offline with the validator the core runs when an "
        "operator approves it: same messages, same reasons. Exits 1 on the first problem, naming the field.",
    )
    validate.add_argument("file", type=pathlib.Path, metavar="FILE", help="the manifest, e.g. plugins/x/manifest.yaml")
    validate.add_argument("--json", action="store_true", help="print the result as JSON")


def check(path: pathlib.Path, catalogue: TraitCatalogue) -> dict[str, str | bool]:
    """The verdict on one manifest file, as printed with --json."""
    try:
        manifest = load_manifest_file(path)
        reject_unknown_fields(manifest)
        validate_manifest(manifest, catalogue)
    except VivifiedError as error:
        found = _FIELD.match(error.message)
        return {
            "file": str(path),
            "valid": False,
            "code": error.code.name,
            "reason": error.reason,
            "domain": error.domain,
            "field": found[1] if found else "",
            "message": error.message,
        }
    return {"file": str(path), "valid": True, "plugin_id": manifest.id, "manifest_sha256": manifest_sha256(manifest)}


def run(args: argparse.Namespace, out: list[str]) -> int:
    verdict = check(args.file, TraitCatalogue.load_default())
    if args.json:
        out.append(json.dumps(verdict, indent=2))
    elif verdict["valid"]:
        out.append(f"{args.file}: valid manifest for {verdict['plugin_id']} (sha256 {verdict['manifest_sha256']})")
    else:
        out.append(f"{args.file}: {verdict['message']} [{verdict['reason']}]")
    return 0 if verdict["valid"] else 1
