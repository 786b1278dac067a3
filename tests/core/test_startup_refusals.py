"""The core refuses to start on insecure or unreadable configuration and says
why, instead of falling back to something weaker (docs/security.md K1, C2)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
from collections.abc import Iterator

import pytest

from support.processes import clean_env, core_running, run_vivified

pytestmark = [pytest.mark.e2e]

EPHEMERAL_PORTS = ("--listen", "127.0.0.1:0", "--bootstrap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")


@pytest.fixture(scope="module")
def initialised_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A data dir a core has started in once (CA, audit key, database) and
    stopped cleanly. Tests copy it rather than change it."""
    data_dir = tmp_path_factory.mktemp("initialised") / "data"
    with core_running(data_dir):
        pass
    yield data_dir


@pytest.fixture
def data_dir(initialised_data_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    copy = tmp_path / "data"
    shutil.copytree(initialised_data_dir, copy)  # copy2 keeps the 0600 modes
    return copy


def _refused_start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        result = run_vivified("core", *args, *EPHEMERAL_PORTS, timeout=30, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the core started (still running after {exc.timeout}s) instead of refusing: {exc.stdout!r}")
    assert result.returncode != 0, f"the core exited 0:\n{result.stdout}\n{result.stderr}"
    return result


def _assert_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """One `error: ...` line on stderr naming the problem, not a traceback."""
    output = result.stderr + result.stdout
    assert "Traceback" not in output, f"the core crashed instead of refusing cleanly:\n{output}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one 'error:' line on stderr, got:\n{result.stderr}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} missing from: {errors[0]}"
    return errors[0]


def _never_served(data_dir: pathlib.Path) -> None:
    assert not (data_dir / "run" / "core.json").exists(), "the core wrote its run file, so it served"


@pytest.mark.parametrize("key_file", ["ca/issuing.key", "ca/root.key", "audit/checkpoint.key"])
def test_k1_ca_key_world_readable_refuses_start(data_dir: pathlib.Path, key_file: str) -> None:
    key = data_dir / key_file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the core created the key with a wider mode than 0600"
    key.chmod(0o644)
    result = _refused_start("--data-dir", str(data_dir))
    _assert_clear_error(result, str(key), "chmod 600")
    _never_served(data_dir)
    # Refused, not quietly repaired: somebody may already have copied the key.
    assert stat.S_IMODE(key.stat().st_mode) == 0o644


def test_k1_untouched_data_dir_starts(data_dir: pathlib.Path) -> None:
    """Control for the refusals above: the same copied data dir with its modes
    untouched starts, so what they refused was the mode alone."""
    with core_running(data_dir) as core:
        assert core.process.poll() is None


def test_k1_unknown_setting_refuses_start(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    result = _refused_start("--data-dir", str(data_dir), env=clean_env(VIVIFIED_LISTEN_ADRESS="127.0.0.1:7443"))
    line = _assert_clear_error(result, "VIVIFIED_LISTEN_ADRESS")
    assert "VIVIFIED_LISTEN_ADDRESS" in line, "the message should point at the setting that was probably meant"
    _never_served(data_dir)


def test_k1_invalid_setting_value_refuses_start(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    result = _refused_start("--data-dir", str(data_dir), env=clean_env(VIVIFIED_LEAF_TTL_SECONDS="an hour"))
    _assert_clear_error(result, "VIVIFIED_LEAF_TTL_SECONDS", "an hour")
    _never_served(data_dir)


def _rule(**extra: object) -> dict[str, object]:
    return {
        "id": "operator-admin",
        "effect": "allow",
        "principal_kinds": ["operator"],
        "services": ["vivified.admin.v1.PluginAdminService"],
        **extra,
    }


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[{"id": "operator-admin", "effect": "allow",', "not valid JSON"),
        (json.dumps([_rule(allow_everything=True)]), "allow_everything"),
        (json.dumps([_rule(), _rule()]), "duplicate rule id 'operator-admin'"),
    ],
    ids=["invalid-json", "unknown-key", "duplicate-id"],
)
def test_c2_corrupt_policy_file_refuses_start(tmp_path: pathlib.Path, content: str, problem: str) -> None:
    data_dir = tmp_path / "data"
    policy = tmp_path / "policy.json"
    policy.write_text(content)
    result = _refused_start("--data-dir", str(data_dir), "--policy-file", str(policy))
    _assert_clear_error(result, problem)
    _never_served(data_dir)


def test_c2_missing_policy_file_refuses_start(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    policy = tmp_path / "absent.json"
    result = _refused_start("--data-dir", str(data_dir), "--policy-file", str(policy))
    _assert_clear_error(result, str(policy))
    _never_served(data_dir)


def test_configured_ca_files_are_used_and_checked(tmp_path: pathlib.Path) -> None:
    """`--ca-files` loads a CA kept outside the data dir, with the same key-file checks."""
    source = tmp_path / "first"
    with core_running(source):
        pass
    ca_dir = tmp_path / "mounted-ca"
    ca_dir.mkdir()
    for name in ("root.crt", "issuing.crt", "issuing.key"):
        shutil.copy2(source / "ca" / name, ca_dir / name)
    flags = ("--ca-files", str(ca_dir / "root.crt"), str(ca_dir / "issuing.crt"), str(ca_dir / "issuing.key"))
    with core_running(tmp_path / "second", *flags) as core:
        assert core.ca_pem == (ca_dir / "root.crt").read_bytes()
        assert not (tmp_path / "second" / "ca").exists()
    os.chmod(ca_dir / "issuing.key", 0o644)
    refused = run_vivified(
        "core",
        "--data-dir",
        str(tmp_path / "third"),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        *flags,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "chmod 600" in refused.stderr and str(ca_dir / "issuing.key") in refused.stderr
