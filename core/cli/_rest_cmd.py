"""`vivified rest config`: generate the REST bridge's Envoy configuration.

Writes envoy.yaml, the descriptor set (`buf build` on proto/, unless
--descriptor-set gives one), openapi.json (served at /v1/openapi.json), the
core's CA (Envoy verifies the core with it) and the listener certificate
(issued by the core's CA, unless --tls-cert/--tls-key give one) into one
directory; then checks the file with `envoy --mode validate` when Envoy is
installed. Run it with `envoy -c <out>/envoy.yaml` (deploy/envoy/README.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vivified.core.cli._client import data_dir
from vivified.core.data_dir import run_file
from vivified.core.rest import (
    DEFAULT_LISTEN,
    BridgeLimits,
    Bundle,
    BundleRequest,
    default_console_dir,
    find_envoy,
    validate_config,
    write_bundle,
)

_HELP = (
    "Generate the Envoy configuration of the REST bridge (grpc_json_transcoder) from the services the core serves: "
    "HTTPS for browsers and scripts on --listen with a certificate from the core's CA (or --tls-cert/--tls-key), "
    "the core's bootstrap port reached over TLS that verifies the core's certificate, only Authorization and "
    "X-Api-Key passed on as metadata, errors as JSON with the HTTP status of the gRPC code, Envoy's own limits "
    "set and its admin interface off. Then run `envoy -c OUT/envoy.yaml`."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rest = sub.add_parser("rest", help="the REST bridge (Envoy) in front of the core", description=_HELP)
    rest.add_argument(
        "--data-dir", help="the core's data dir: its CA, run/core.json and operator/ca.crt (default ./.vivified)"
    )
    verbs = rest.add_subparsers(dest="verb", required=True)
    config = verbs.add_parser(
        "config", help="generate envoy.yaml, the descriptor set, openapi.json and TLS", description=_HELP
    )
    config.add_argument("--out", type=Path, help="output directory (default <data-dir>/rest)")
    config.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help=f"HTTPS listener (default {DEFAULT_LISTEN})"
    )
    config.add_argument(
        "--core-address",
        metavar="HOST:PORT",
        help="the core's bootstrap port (default: from <data-dir>/run/core.json of a running core)",
    )
    config.add_argument(
        "--trust-domain", help="the core's trust domain (default: from run/core.json, else vivified.local)"
    )
    config.add_argument(
        "--core-ca", type=Path, help="CA bundle that verifies the core (default <data-dir>/operator/ca.crt)"
    )
    config.add_argument(
        "--descriptor-set",
        type=Path,
        help="a descriptor set built with `buf build --as-file-descriptor-set` (default: build one now "
        "from this checkout's proto/)",
    )
    config.add_argument(
        "--tls-cert", type=Path, help="the listener's certificate chain (PEM); default: issued by the core's CA"
    )
    config.add_argument("--tls-key", type=Path, help="the listener's private key (PEM), with --tls-cert")
    config.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="DNS",
        help="a DNS name for the issued listener certificate (repeatable; default localhost)",
    )
    config.add_argument(
        "--max-request-bytes",
        type=int,
        default=BridgeLimits().max_request_bytes,
        help=f"largest request body Envoy accepts (default {BridgeLimits().max_request_bytes})",
    )
    config.add_argument(
        "--request-timeout",
        type=int,
        default=BridgeLimits().request_timeout_seconds,
        metavar="SECONDS",
        help=f"whole-request timeout (default {BridgeLimits().request_timeout_seconds})",
    )
    console = config.add_mutually_exclusive_group()
    console.add_argument(
        "--console-dir",
        type=Path,
        help="the built admin console to serve at / (default: core/ui/dist of this checkout when built)",
    )
    console.add_argument("--no-console", action="store_true", help="serve the REST API only, no admin console")
    config.add_argument("--json", action="store_true", help="print the result as JSON")


def request_for(args: argparse.Namespace, environ: dict[str, str]) -> BundleRequest:
    directory = data_dir(args, environ)
    run: dict[str, str] = {}
    described = run_file(directory)
    if described.is_file():
        run = json.loads(described.read_text())
    core_address = args.core_address or run.get("bootstrap_address")
    if not core_address:
        raise ValueError(f"no --core-address and no running core in {directory} (run/core.json)")
    return BundleRequest(
        out_dir=args.out or directory / "rest",
        core_address=core_address,
        trust_domain=args.trust_domain or run.get("trust_domain") or "vivified.local",
        core_ca_file=args.core_ca or directory / "operator" / "ca.crt",
        listen=args.listen,
        descriptor_set=args.descriptor_set,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        ca_dir=directory / "ca",
        tls_names=tuple(args.tls_name) or ("localhost",),
        limits=BridgeLimits(max_request_bytes=args.max_request_bytes, request_timeout_seconds=args.request_timeout),
        console_dir=None if args.no_console else (args.console_dir or default_console_dir()),
    )


def describe_bundle(bundle: Bundle, validated: bool) -> dict[str, object]:
    return {
        "config": str(bundle.config_file),
        "url": bundle.url,
        "openapi": bundle.openapi_url,
        "services": list(bundle.services),
        "certificate": str(bundle.certificate),
        "certificate_from_core_ca": bundle.issued_by_core_ca,
        "validated": validated,
        "console": bundle.console_url,
    }


def run(args: argparse.Namespace, environ: dict[str, str], out: list[str]) -> int:
    try:
        request = request_for(args, environ)
    except (ValueError, OSError) as exc:
        out.append(f"error: {exc}")
        return 1
    bundle = write_bundle(request)
    envoy = find_envoy()
    if envoy is not None:
        validate_config(envoy, bundle.config_file)
    described = describe_bundle(bundle, envoy is not None)
    if args.json:
        out.append(json.dumps(described, indent=2))
        return 0
    out.append(f"wrote {bundle.config_file} ({len(bundle.services)} services: {', '.join(bundle.services)})")
    out.append("validated with envoy --mode validate" if envoy else "envoy not installed: not validated")
    if bundle.console_url:
        out.append(f"admin console: {bundle.console_url}")
    out.append(f"run: envoy -c {bundle.config_file} --concurrency 1")
    out.append(f"REST base URL: {bundle.url}/v1  (OpenAPI: {bundle.openapi_url})")
    return 0
