"""Core flags → CoreConfig: the per-principal call rate."""

from __future__ import annotations

import argparse

import pytest

from vivified.core.chain import RateLimitConfig
from vivified.core.cli._settings import SettingsError, add_core_flags, core_config
from vivified.core.config import CoreConfig


def parse(*flags: str) -> CoreConfig:
    parser = argparse.ArgumentParser()
    add_core_flags(parser)
    return core_config(parser.parse_args(list(flags)), {})


def test_call_rate_sets_the_per_principal_limit_with_twice_the_burst() -> None:
    assert parse("--call-rate", "3000").rate_limit == RateLimitConfig(rate_per_second=3000.0, burst=6000)
    assert parse().rate_limit == RateLimitConfig()


@pytest.mark.parametrize("rate", ["0", "-5"])
def test_a_call_rate_that_is_not_positive_is_refused(rate: str) -> None:
    with pytest.raises(SettingsError, match=r"--call-rate / VIVIFIED_CALL_RATE\) must be positive"):
        parse("--call-rate", rate)
