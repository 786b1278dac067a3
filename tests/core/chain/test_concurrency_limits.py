"""The per-principal slot table under the concurrency layer, and its settings."""

from __future__ import annotations

import argparse

import pytest

from vivified.core.chain import ConcurrencyConfig, ConcurrencyLimits, InFlight
from vivified.core.cli._settings import SettingsError, add_core_flags, core_config


def test_slots_are_counted_per_principal_and_kind_and_given_back() -> None:
    limits = ConcurrencyLimits(lambda: ConcurrencyConfig(max_streams=2, max_calls=1))
    assert limits.acquire("plugin:a", True) and limits.acquire("plugin:a", True)
    assert not limits.acquire("plugin:a", True)  # a third stream
    assert limits.acquire("plugin:a", False)  # unary calls have their own cap
    assert limits.acquire("plugin:b", True)  # another principal has its own slots
    assert limits.of("plugin:a") == InFlight(streams=2, calls=1)
    limits.release("plugin:a", True)
    assert limits.acquire("plugin:a", True)
    for key, streaming in (("plugin:a", True), ("plugin:a", True), ("plugin:a", False), ("plugin:b", True)):
        limits.release(key, streaming)
    limits.release("plugin:a", True)  # one release too many changes nothing
    assert limits.totals() == InFlight(streams=0, calls=0, peak_streams=3, peak_calls=1)


def config_from(*flags: str) -> ConcurrencyConfig:
    parser = argparse.ArgumentParser()
    add_core_flags(parser)
    return core_config(parser.parse_args(list(flags)), {}).concurrency


def test_caps_come_from_flags_and_environment_and_are_checked() -> None:
    assert config_from() == ConcurrencyConfig(max_streams=256, max_calls=256)
    assert config_from("--max-streams", "10", "--max-calls", "5") == ConcurrencyConfig(max_streams=10, max_calls=5)
    parser = argparse.ArgumentParser()
    add_core_flags(parser)
    from_env = core_config(parser.parse_args([]), {"VIVIFIED_MAX_STREAMS": "7"}).concurrency
    assert from_env.max_streams == 7
    with pytest.raises(SettingsError, match="at least 1"):
        config_from("--max-calls", "0")
