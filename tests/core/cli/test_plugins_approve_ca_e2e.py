"""`vivified plugins approve` prints, beside the join token, the path and the
sha256 fingerprint of the CA certificate a plugin must trust on the bootstrap
port before it has an identity. The fingerprint is checked against openssl's,
and the printed path and token are enough to register."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess

import pytest

from support.clients import register
from support.processes import CoreProcess, run_cli
from vivified.core.manifest import load_manifest_file

pytestmark = [pytest.mark.e2e]


def _openssl_fingerprint(path: pathlib.Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out.split("=", 1)[1]


def _manifest_file(tmp_path: pathlib.Path, plugin_id: str) -> pathlib.Path:
    path = tmp_path / f"{plugin_id}.yaml"
    path.write_text(
        f"id: {plugin_id}\nname: CA probe\nversion: 0.1.0\ndescription: prints the CA\n"
        "contracts: [vivified.communication.v1.CommunicationPluginService]\ntraits: [communication_plugin]\n"
    )
    return path


def test_approve_prints_ca_path_and_fingerprint(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    manifest = _manifest_file(tmp_path, "ca-probe")
    result = run_cli(core, "plugins", "approve", str(manifest), "--replace")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ca_file = core.operator_dir / "ca.crt"
    assert f"CA certificate the plugin must trust (VIVIFIED_CA_FILE): {ca_file.resolve()}" in lines
    assert f"CA certificate sha256 fingerprint: {_openssl_fingerprint(ca_file)}" in lines
    token = lines[-1]
    printed = pathlib.Path(
        next(line for line in lines if line.startswith("CA certificate the plugin")).rsplit(": ", 1)[1]
    )
    assert printed.read_bytes() == core.ca_pem
    identity = asyncio.run(register(core, load_manifest_file(manifest), token))
    assert identity.response.ca_certificate_pem.encode() == printed.read_bytes()


def test_approve_json_carries_ca_path_and_fingerprint(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    result = run_cli(core, "plugins", "approve", str(_manifest_file(tmp_path, "ca-probe-json")), "--replace", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    ca_file = core.operator_dir / "ca.crt"
    assert data["ca_certificate_file"] == str(ca_file.resolve())
    assert data["ca_certificate_sha256"] == _openssl_fingerprint(ca_file)
    assert data["join_token"]
