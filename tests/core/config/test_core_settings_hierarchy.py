"""Core settings: defaults < config file < VIVIFIED_* environment < flags, every
value reporting its source; a bad or insecure config file stops the core (K1)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from support.processes import clean_env, start_core, stop_process
from vivified.core.cli import build_parser
from vivified.core.cli._errors import SettingsError
from vivified.core.cli._settings import core_config, resolved_settings


def _file(tmp: pathlib.Path, text: str, mode: int = 0o600) -> pathlib.Path:
    path = tmp / "core.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def _args(*argv: str) -> object:
    return build_parser().parse_args(["core", *argv])


def test_precedence_and_sources(tmp_path: pathlib.Path) -> None:
    path = _file(
        tmp_path,
        'leaf_ttl_seconds = 100\ntrust_domain = "file.example"\nprofile = "production"\n'
        'policy_file = "rules.json"\nevent_max_attempts = 7\n',
    )
    env = {
        "VIVIFIED_CONFIG_FILE": str(path),
        "VIVIFIED_LEAF_TTL_SECONDS": "200",
        "VIVIFIED_TRUST_DOMAIN": "env.example",
    }
    resolved = resolved_settings(_args("--trust-domain", "flag.example"), env)  # type: ignore[arg-type]
    sources = {k: r.source for k, r in resolved.items()}
    assert sources == {
        "leaf_ttl_seconds": "env:VIVIFIED_LEAF_TTL_SECONDS",
        "trust_domain": "flag",
        "profile": f"file:{path}",
        "policy_file": f"file:{path}",
        "event_max_attempts": f"file:{path}",
    }
    config = core_config(_args("--trust-domain", "flag.example"), env)  # type: ignore[arg-type]
    assert (config.leaf_ttl_seconds, config.trust_domain, config.profile) == (200, "flag.example", "production")
    assert config.events.max_attempts == 7
    assert config.policy_file == tmp_path.absolute() / "rules.json"  # relative to the file
    assert config.heartbeat_interval_seconds == 5.0  # default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leaf_tll_seconds = 100\n", "unknown key(s) leaf_tll_seconds; known keys: data_dir, profile"),
        ('leaf_ttl_seconds = "100"\n', "leaf_ttl_seconds must be an integer, got '100'"),
        ("heartbeat_interval_seconds = true\n", "heartbeat_interval_seconds must be a number"),
        ('profile = "staging"\n', "profile must be one of development, production"),
        ("leaf_ttl_seconds = 5\n", "leaf_ttl_seconds must be at least 10"),
        ("profile = \n", "is not valid TOML"),
    ],
)
def test_bad_file_values_refused(tmp_path: pathlib.Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        core_config(_args("--config", str(path)), {})  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_insecure_files_and_values_refused(tmp_path: pathlib.Path) -> None:
    writable = _file(tmp_path, 'profile = "production"\n', 0o622)
    with pytest.raises(SettingsError, match="writable by group or others"):
        core_config(_args("--config", str(writable)), {})  # type: ignore[arg-type]
    leaky = _file(tmp_path, 'database_url = "postgresql://app:s3cret@db:5432/v"\n', 0o644)
    with pytest.raises(SettingsError, match="holds a password but the file is readable") as caught:
        core_config(_args("--config", str(leaky)), {})  # type: ignore[arg-type]
    assert "s3cret" not in str(caught.value)
    with pytest.raises(SettingsError, match="VIVIFIED_LEAF_TTL_SECONDS: leaf_ttl_seconds must be an integer"):
        core_config(_args(), {"VIVIFIED_LEAF_TTL_SECONDS": "ten"})  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="unknown setting"):
        core_config(_args(), {"VIVIFIED_LEAF_TTL": "10"})  # type: ignore[arg-type]


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_config_show_prints_each_setting_with_its_source(tmp_path: pathlib.Path) -> None:
    path = _file(
        tmp_path,
        'leaf_ttl_seconds = 120\nmetrics_address = "127.0.0.1:9999"\n'
        'redis_url = "redis://:pw-canary-1@127.0.0.1:6379/0"\n',
    )
    env = clean_env(VIVIFIED_LEAF_TTL_SECONDS="240", VIVIFIED_CONFIG_FILE=str(path))
    shown = _cli("config", "show", "--heartbeat-interval", "2.5", "--event-max-subscriptions", "8", env=env)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()}
    assert rows["config_file"] == [str(path), "env:VIVIFIED_CONFIG_FILE"]
    assert rows["leaf_ttl_seconds"] == ["240", "env:VIVIFIED_LEAF_TTL_SECONDS"]
    assert rows["metrics_address"] == ["127.0.0.1:9999", f"file:{path}"]
    assert rows["heartbeat_interval_seconds"] == ["2.5", "flag"]
    assert rows["trust_domain"] == ["vivified.local", "default"]
    assert rows["event_max_subscriptions"] == ["8", "flag"]
    assert rows["event_max_dead_letters"] == ["10000", "default"]
    assert rows["redis_url"] == ["redis://:********@127.0.0.1:6379/0", f"file:{path}"]
    assert "pw-canary-1" not in shown.stdout + shown.stderr


def test_core_started_from_a_file_and_refused_on_unknown_key(tmp_path: pathlib.Path) -> None:
    path = _file(tmp_path, 'trust_domain = "from-file.example"\nleaf_ttl_seconds = 600\n')
    core = start_core(tmp_path / "data", "--config", str(path))
    try:
        assert core.trust_domain == "from-file.example"
    finally:
        stop_process(core.process)
    bad = _file(tmp_path, 'trust_domain = "x.example"\nlisten = "0.0.0.0:1"\n')
    refused = _cli("core", "--data-dir", str(tmp_path / "data2"), "--config", str(bad), env=clean_env())
    assert refused.returncode == 1
    assert "unknown key(s) listen; known keys:" in refused.stderr and "listen_address" in refused.stderr
    assert not (tmp_path / "data2").exists()  # refused before anything was created
    assert os.environ.get("VIVIFIED_CONFIG_FILE") is None
