"""Writes deploy/envoy/envoy.yaml: the REST bridge's Envoy configuration as
`vivified rest config` generates it, for the production layout the README in
deploy/envoy/ describes (files under /etc/vivified/rest, the core reachable
as vivified-core:7444). tests/core/rest/test_rest_config.py fails when the
committed file differs from what this writes now.

    .venv/bin/python tools/envoy_example.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from vivified.core.rest import (
    BridgeConfig,
    build_descriptor_set,
    load_descriptor_set,
    render_config,
    streamed_paths,
    transcoded_services,
)

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "deploy" / "envoy" / "envoy.yaml"
ETC = Path("/etc/vivified/rest")


def example(services: tuple[str, ...], streamed: tuple[str, ...] = ()) -> str:
    return render_config(
        BridgeConfig(
            listen_host="0.0.0.0",
            listen_port=8443,
            core_host="vivified-core",
            core_port=7444,
            core_server_name="core.vivified.local",
            core_spiffe_id="spiffe://vivified.local/core",
            ca_file=ETC / "core-ca.crt",
            cert_file=ETC / "tls" / "rest.crt",
            key_file=ETC / "tls" / "rest.key",
            descriptor_file=ETC / "vivified.binpb",
            openapi_file=ETC / "openapi.json",
            services=services,
            streamed_paths=streamed,
        )
    )


def current() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        files = load_descriptor_set(build_descriptor_set(ROOT, Path(tmp) / "vivified.binpb"))
    services = transcoded_services(files)
    return example(services, streamed_paths(files, services))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args()
    text = current()
    if args.check:
        stale = not TARGET.exists() or TARGET.read_text() != text
        print(f"{TARGET} is {'stale: run tools/envoy_example.py' if stale else 'current'}")
        return 1 if stale else 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
