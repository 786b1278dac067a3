"""The console tests' fixtures: the real Envoy serving the built console and the
REST bridge in front of the module's core, and an admin (TOTP enrolled over REST)
with a viewer. One copy for every console test module."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import ssl
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.console import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    DIST,
    VIEWER_PASSWORD,
    VIEWER_USERNAME,
    Console,
    free_port,
)
from support.processes import CoreProcess, run_cli
from support.users import code_at, create_admin
from vivified.core.rest import find_envoy, start_envoy


@pytest.fixture(scope="module")
def console(core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    assert (DIST / "index.html").is_file(), "build the console first: tools/setup.sh runs npm run build in core/ui"
    port = free_port()
    out = tmp_path_factory.mktemp("rest")
    made = run_cli(
        core, "rest", "config", "--listen", f"127.0.0.1:{port}", "--out", str(out), "--console-dir", str(DIST), "--json"
    )
    assert made.returncode == 0, made.stderr + made.stdout
    config = json.loads(made.stdout)
    assert config["validated"] and config["console"] == f"https://127.0.0.1:{port}/", config
    envoy_binary = find_envoy()
    assert envoy_binary is not None
    envoy = start_envoy(envoy_binary, pathlib.Path(config["config"]), out / "envoy.log", listen=("127.0.0.1", port))
    ca_file = core.operator_dir / "ca.crt"
    try:
        leaf = x509.load_pem_x509_certificate(pathlib.Path(config["certificate"]).read_bytes())
        spki = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        yield Console(
            core,
            envoy,
            port,
            ssl.create_default_context(cafile=str(ca_file)),
            ca_file,
            base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        )
    finally:
        envoy.stop()


@pytest.fixture(scope="module")
def admin(console: Console, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An admin with TOTP enrolled (over REST), and a viewer it created; the console then signs the
    admin in with password and a code."""
    create_admin(console.core, ADMIN_USERNAME, ADMIN_PASSWORD, tmp_path_factory.mktemp("admin"))
    status, first, _ = console.call("POST", "/v1/auth:login", {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    assert status == 200 and first["step"] == "LOGIN_STEP_MFA_ENROLLMENT_REQUIRED", first
    status, enrol, _ = console.call("POST", "/v1/auth:enrollMfa", {"mfaToken": first["mfaToken"]})
    assert status == 200, enrol
    status, confirmed, _ = console.call(
        "POST", "/v1/auth:confirmMfa", {"mfaToken": first["mfaToken"], "code": code_at(enrol["secret"], time.time())}
    )
    assert status == 200, confirmed
    token = confirmed["tokens"]["accessToken"]
    status, created, _ = console.call(
        "POST",
        "/v1/users",
        {"username": VIEWER_USERNAME, "password": VIEWER_PASSWORD, "roles": ["viewer"]},
        token=token,
    )
    assert status == 200, created
    return {"secret": enrol["secret"], "token": token, "viewer_id": created["user"]["userId"]}
