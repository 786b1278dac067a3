"""`vivified ca rotate|status`: rotate the core's root and issuing CA with an
overlap, and show where a rotation stands.

Both work on the CA directory in the core's data dir (`<data-dir>/ca`), as
the user the core runs as (the keys are mode 0600). `rotate` only begins:
the running core performs the switch and the removal when they are due,
audits each step and writes `holders.json` (which plugins still hold a
certificate of the old chain) for `status`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from vivified.core.ca import (
    NEXT_DIR,
    PREVIOUS_ROOT,
    CAConfig,
    CAError,
    begin_rotation,
    load_certificate_file,
    read_plan,
)
from vivified.core.carotation import HOLDERS_FILE
from vivified.core.cli._client import data_dir
from vivified.core.clock import SystemClock


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "rotate the core's root and issuing CA with an overlap, and show its state"
    ca = sub.add_parser("ca", help=text, description=text)
    ca.add_argument("--data-dir", help="core data dir holding the CA (default ./.vivified)")
    verbs = ca.add_subparsers(dest="verb", required=True)
    rotate = verbs.add_parser(
        "rotate",
        help="create the next root and issuing CA; the running core distributes, switches and removes",
        description="Create the next root and issuing CA beside the current ones. The running core then "
        "(1) hands every plugin a bundle of both roots at its next renewal, (2) after OVERLAP (and at "
        "least one leaf lifetime) signs new certificates with the next issuing CA, and (3) after OVERLAP "
        "more (at least one leaf lifetime) stops trusting the old root. Each step is audited.",
    )
    rotate.add_argument(
        "--overlap",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="least time each overlap window lasts (default 3600; never less than the leaf TTL)",
    )
    rotate.add_argument(
        "--ca-ttl",
        type=float,
        metavar="SECONDS",
        help="lifetime of the next root and issuing CA (default: root 10 years, issuing CA 1 year)",
    )
    rotate.add_argument("--json", action="store_true", help="print JSON")
    status = verbs.add_parser("status", help="roots, issuing CAs, expiry, rotation phase, old-chain holders")
    status.add_argument("--json", action="store_true", help="print JSON")


def _trust_domain(root: x509.Certificate) -> str:
    try:
        san = root.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CAError("the root certificate names no SPIFFE trust domain") from None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri.removeprefix("spiffe://").rstrip("/")
    raise CAError("the root certificate names no SPIFFE trust domain")


def _describe(role: str, cert: x509.Certificate, now: dt.datetime) -> dict[str, Any]:
    return {
        "role": role,
        "serial": format(cert.serial_number, "x"),
        "subject": cert.subject.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "expires_in_seconds": int((cert.not_valid_after_utc - now).total_seconds()),
    }


def _status(directory: Path, now: dt.datetime) -> dict[str, Any]:
    if not (directory / "root.crt").exists():
        raise CAError(f"{directory} holds no CA (start the core once to create it)", reason="CA_INCOMPLETE")
    plan = read_plan(directory)
    roots = [_describe("current", load_certificate_file(directory / "root.crt"), now)]
    issuers = [_describe("current", load_certificate_file(directory / "issuing.crt"), now)]
    if plan is not None and plan.phase == "distributing":
        roots.append(_describe("next", load_certificate_file(directory / NEXT_DIR / "root.crt"), now))
        issuers.append(_describe("next", load_certificate_file(directory / NEXT_DIR / "issuing.crt"), now))
    elif plan is not None and (directory / PREVIOUS_ROOT).exists():
        roots.append(_describe("previous", load_certificate_file(directory / PREVIOUS_ROOT), now))
    holders: dict[str, Any] | None = None
    if plan is not None and (directory / HOLDERS_FILE).exists():
        holders = json.loads((directory / HOLDERS_FILE).read_text())
    return {
        "roots": roots,
        "issuers": issuers,
        "rotation": json.loads(plan.to_json()) if plan is not None else None,
        "old_chain_holders": holders,
    }


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    directory = data_dir(args, environ) / "ca"
    clock = SystemClock()
    if args.verb == "rotate":
        if not (directory / "root.crt").exists():
            raise CAError(f"{directory} holds no CA (start the core once to create it)", reason="CA_INCOMPLETE")
        trust_domain = _trust_domain(load_certificate_file(directory / "root.crt"))
        ttl = dt.timedelta(seconds=args.ca_ttl) if args.ca_ttl else None
        config = (
            CAConfig(trust_domain=trust_domain)
            if ttl is None
            else CAConfig(trust_domain=trust_domain, root_ttl=ttl, issuing_ttl=ttl)
        )
        if args.overlap <= 0:
            raise CAError("--overlap must be positive", reason="INVALID_REQUEST")
        plan = begin_rotation(directory, config, clock, overlap=dt.timedelta(seconds=args.overlap))
        if args.json:
            out.append(plan.to_json())
        else:
            out.append(f"next root and issuing CA created in {directory / NEXT_DIR}")
            out.append(
                f"the core switches issuing at {plan.switch_at.isoformat()} at the earliest "
                "(and not before every plugin renewed once); see `vivified ca status`"
            )
        return 0
    status = _status(directory, clock.now())
    if args.json:
        out.append(json.dumps(status, indent=2))
        return 0
    out.append(f"{'ROOT':9} {'SERIAL':42} {'EXPIRES':27} LEFT")
    for cert in status["roots"]:
        out.append(f"{cert['role']:9} {cert['serial']:42} {cert['not_after']:27} {cert['expires_in_seconds']}s")
    out.append(f"{'ISSUER':9} {'SERIAL':42} {'EXPIRES':27} LEFT")
    for cert in status["issuers"]:
        out.append(f"{cert['role']:9} {cert['serial']:42} {cert['not_after']:27} {cert['expires_in_seconds']}s")
    rotation = status["rotation"]
    if rotation is None:
        out.append("no rotation under way")
    else:
        out.append(
            f"rotation: {rotation['phase']}, switch at {rotation['switch_at']}, "
            f"remove at {rotation['remove_at'] or '(set at the switch)'}"
        )
        holders = status["old_chain_holders"]
        if holders is not None:
            names = ", ".join(holders["plugins"]) or "none"
            out.append(f"plugins holding old-chain certificates (as of {holders['as_of']}): {names}")
    return 0
