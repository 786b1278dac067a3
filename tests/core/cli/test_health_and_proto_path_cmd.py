"""`vivified health` (the container probe) and `vivified proto-path` against a real core:
SERVING exits 0; a core whose certificate does not chain to the CA given, or no core at
all, exits 1 — a probe that answers is the real core."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import socket
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.processes import clean_env, core_running, run_vivified

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _other_ca(path: pathlib.Path) -> pathlib.Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the core's CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_health_answers_serving_only_from_the_real_core(tmp_path: pathlib.Path) -> None:
    with core_running(tmp_path / "core") as core:
        ca = str(core.operator_dir / "ca.crt")
        ok = run_vivified("health", "--address", core.bootstrap_address, "--ca-file", ca, "--json")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout) == {"address": core.bootstrap_address, "status": "SERVING"}
        # The data dir's operator CA is the default root.
        plain = run_vivified("health", "--address", core.bootstrap_address, "--data-dir", str(core.data_dir))
        assert plain.returncode == 0 and plain.stdout.strip() == f"{core.bootstrap_address}: SERVING"

        wrong = run_vivified(
            "health",
            "--address",
            core.bootstrap_address,
            "--ca-file",
            str(_other_ca(tmp_path / "other.crt")),
            "--timeout",
            "2",
        )
        assert wrong.returncode == 1
        assert wrong.stdout.strip() == f"{core.bootstrap_address}: UNREACHABLE: UNAVAILABLE"

        # The module the container probes exec: the same check, without the CLI's imports.
        def probe(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "vivified.core.probe", *args],
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=60,
            )

        served = probe("--address", core.bootstrap_address, "--ca-file", ca)
        assert served.returncode == 0 and served.stdout.strip() == f"{core.bootstrap_address}: SERVING"
        refused = probe("--address", core.bootstrap_address, "--ca-file", str(tmp_path / "other.crt"), "--timeout", "2")
        assert refused.returncode == 1 and "UNREACHABLE" in refused.stdout
        lean = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, vivified.core.probe; "
                "print(sorted(m for m in sys.modules if m.startswith('vivified.core.')))",
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=True,
        )
        assert json.loads(lean.stdout.replace("'", '"')) == ["vivified.core.probe", "vivified.core.probe._health"]

    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{placeholder.getsockname()[1]}"
    gone = run_vivified("health", "--address", closed, "--ca-file", ca, "--timeout", "1")
    assert gone.returncode == 1 and "UNREACHABLE" in gone.stdout

    missing = run_vivified("health", "--ca-file", str(tmp_path / "nope.crt"))
    assert missing.returncode == 1 and "cannot read the core's CA certificate" in missing.stderr


def test_proto_path_names_the_checkout_protos_in_an_editable_install() -> None:
    where = run_vivified("proto-path")
    assert where.returncode == 0, where.stderr
    assert pathlib.Path(where.stdout.strip()) == ROOT / "proto"
    listed = json.loads(run_vivified("proto-path", "--json").stdout)
    assert "grpc/health/v1/health.proto" in listed["files"]
    assert "vivified/registry/v1/registry.proto" in listed["files"]
