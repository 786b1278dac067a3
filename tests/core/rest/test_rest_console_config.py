"""The console's routes in the generated Envoy configuration: every built file
a GET direct response with the strict CSP, `/` the index, nothing else of the
directory served, and a console that cannot be served refused up front."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from vivified.core.rest import CONSOLE_CSP, BridgeConfig, envoy_config
from vivified.core.rest._envoy import MAX_CONSOLE_FILE_BYTES, console_files


def _config(tmp: pathlib.Path, console: pathlib.Path | None) -> BridgeConfig:
    return BridgeConfig(
        listen_host="127.0.0.1",
        listen_port=8443,
        core_host="127.0.0.1",
        core_port=7444,
        core_server_name="core.vivified.local",
        core_spiffe_id="spiffe://vivified.local/core",
        ca_file=tmp / "ca.crt",
        cert_file=tmp / "rest.crt",
        key_file=tmp / "rest.key",
        descriptor_file=tmp / "d.binpb",
        openapi_file=tmp / "openapi.json",
        services=("vivified.identity.v1.AuthService",),
        console_dir=console,
    )


def _routes(config: BridgeConfig) -> list[dict[str, Any]]:
    manager = envoy_config(config)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return list(manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"])


def _built(tmp: pathlib.Path) -> pathlib.Path:
    dist = tmp / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html>")
    (dist / "assets" / "index-abc.js").write_text("console.log(1)")
    (dist / "assets" / "index-abc.css").write_text("body{}")
    (dist / "secret.key").write_text("not served")
    return dist


def test_console_files_served_with_the_csp(tmp_path: pathlib.Path) -> None:
    routes = _routes(_config(tmp_path, _built(tmp_path)))
    served = {
        r["match"]["path"]: r for r in routes if "direct_response" in r and r["match"].get("path") != "/v1/openapi.json"
    }
    assert set(served) == {"/", "/index.html", "/assets/index-abc.js", "/assets/index-abc.css"}
    for path, route in served.items():
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert headers["content-security-policy"] == CONSOLE_CSP, path
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert route["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
    assert "'unsafe-inline'" not in CONSOLE_CSP and "script-src 'self'" in CONSOLE_CSP
    assert {h["header"]["key"]: h["header"]["value"] for h in served["/"]["response_headers_to_add"]}[
        "cache-control"
    ] == "no-store"
    # The REST catch-all stays last.
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["route"]["cluster"] == "core"


def test_no_console_no_console_routes(tmp_path: pathlib.Path) -> None:
    assert [r["match"] for r in _routes(_config(tmp_path, None))] == [
        {"path": "/v1/openapi.json", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        {"prefix": "/"},
    ]


def test_unbuilt_or_oversized_console_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="no index.html"):
        console_files(tmp_path)
    dist = _built(tmp_path)
    (dist / "assets" / "huge.js").write_bytes(b"x" * (MAX_CONSOLE_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="larger than Envoy serves"):
        console_files(dist)
