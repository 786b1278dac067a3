"""The operator's egress config file (strict keys) and credential resolution."""

from __future__ import annotations

import ipaddress
import json
import pathlib
from typing import Any

import pytest

from vivified.core.egress import (
    CredentialRule,
    Credentials,
    EgressConfig,
    Secret,
    load_egress_config,
)
from vivified.core.errors import FailedPrecondition


def _write(tmp_path: pathlib.Path, data: Any) -> pathlib.Path:
    path = tmp_path / "egress.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_defaults_are_the_production_limits() -> None:
    config = EgressConfig()
    assert config.allow_ranges == () and config.report_only_plugins == frozenset()
    assert (config.max_request_bytes, config.max_response_bytes) == (1024 * 1024, 10 * 1024 * 1024)
    assert (config.total_timeout_seconds, config.idle_timeout_seconds, config.connect_timeout_seconds) == (30, 10, 5)
    assert (config.max_redirects, config.per_plugin_concurrency) == (5, 8)


def test_load_a_full_config(tmp_path: pathlib.Path) -> None:
    config = load_egress_config(
        _write(
            tmp_path,
            {
                "allow_ranges": ["10.20.0.0/16", "fd00::/8"],
                "deny_ranges": ["10.20.30.0/24"],
                "max_request_bytes": 2048,
                "max_response_bytes": 4096,
                "total_timeout_seconds": 12.5,
                "idle_timeout_seconds": 2,
                "connect_timeout_seconds": 1,
                "max_redirects": 0,
                "per_plugin_rate_per_second": 3.5,
                "per_plugin_burst": 7,
                "per_plugin_concurrency": 2,
                "credentials": [
                    {
                        "plugin_id": "email",
                        "domain": "API.Mail.example.com.",
                        "header": "Authorization",
                        "value_env": "EMAIL_TOKEN",
                    }
                ],
                "report_only_plugins": ["email"],
            },
        )
    )
    assert config.allow_ranges == (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00::/8"))
    assert config.deny_ranges == (ipaddress.ip_network("10.20.30.0/24"),)
    assert (config.max_request_bytes, config.total_timeout_seconds, config.max_redirects) == (2048, 12.5, 0)
    assert config.credentials == (CredentialRule("email", "api.mail.example.com", "Authorization", "EMAIL_TOKEN"),)
    assert config.report_only_plugins == {"email"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"allow_range": ["10.0.0.0/8"]}, "unknown key(s) allow_range"),
        ([], "must be a JSON object"),
        ("{not json", "cannot read"),
        ({"allow_ranges": "10.0.0.0/8"}, "list of CIDR strings"),
        ({"allow_ranges": ["127.0.0.1/8"]}, "host bits set"),
        ({"allow_ranges": ["0.0.0.0/0"]}, "switch the address check off"),
        ({"allow_ranges": ["::/0"]}, "switch the address check off"),
        ({"max_redirects": "5"}, "must be an integer"),
        ({"max_redirects": True}, "must be an integer"),
        ({"max_redirects": 1.5}, "must be an integer"),
        ({"max_redirects": -1}, "must not be negative"),
        ({"idle_timeout_seconds": 0}, "must be positive"),
        ('{"total_timeout_seconds": Infinity}', "must be positive and finite"),
        ('{"idle_timeout_seconds": NaN}', "must be positive and finite"),
        ({"per_plugin_concurrency": 0}, "at least 1"),
        ({"report_only_plugins": "email"}, "list of plugin ids"),
        ({"credentials": {}}, "must be a list"),
        ({"credentials": [{"plugin_id": "p", "domain": "a.example.com", "header": "X-K"}]}, "exactly"),
        (
            {
                "credentials": [
                    {
                        "plugin_id": "p",
                        "domain": "a.example.com",
                        "header": "X-K",
                        "value_env": "K",
                        "value": "inline-secret",
                    }
                ]
            },
            "exactly",
        ),
        ({"credentials": [{"plugin_id": "p", "domain": "*", "header": "X-K", "value_env": "K"}]}, "refused"),
        ({"credentials": [{"plugin_id": "p", "domain": "127.0.0.1", "header": "X-K", "value_env": "K"}]}, "refused"),
        (
            {"credentials": [{"plugin_id": "p", "domain": "a.example.com", "header": "Host", "value_env": "K"}]},
            "not a header a credential may set",
        ),
        (
            {"credentials": [{"plugin_id": "p", "domain": "a.example.com", "header": "X K", "value_env": "K"}]},
            "not a header a credential may set",
        ),
        (
            {"credentials": [{"plugin_id": "p", "domain": "a.example.com", "header": "X-K", "value_env": "1K"}]},
            "not an environment variable name",
        ),
        (
            {"credentials": [{"plugin_id": "", "domain": "a.example.com", "header": "X-K", "value_env": "K"}]},
            "plugin_id must not be empty",
        ),
        (
            {
                "credentials": [
                    {"plugin_id": "p", "domain": "a.example.com", "header": "X-K", "value_env": "K"},
                    {"plugin_id": "p", "domain": "A.example.com", "header": "x-k", "value_env": "L"},
                ]
            },
            "listed twice",
        ),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(tmp_path: pathlib.Path, data: Any, message: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        load_egress_config(_write(tmp_path, data))
    assert caught.value.reason == "EGRESS_CONFIG_INVALID"
    assert message in caught.value.message


def test_missing_file_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FailedPrecondition, match="cannot read"):
        load_egress_config(tmp_path / "absent.json")


def test_credentials_are_read_once_and_never_printed() -> None:
    environ = {"TOKEN": "s3cret-value"}
    rule = CredentialRule("email", "*.example.com", "Authorization", "TOKEN")
    credentials = Credentials([rule], environ)
    environ["TOKEN"] = "changed-later"
    assert credentials.headers_for("email", "api.example.com") == [("Authorization", "s3cret-value")]
    assert credentials.headers_for("email", "example.com") == []
    assert credentials.headers_for("other", "api.example.com") == []
    secret = Secret("s3cret-value")
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret) and "s3cret" not in repr([secret])


@pytest.mark.parametrize("environ", [{}, {"TOKEN": ""}, {"TOKEN": "a\r\nX-Injected: 1"}, {"TOKEN": "tab\there"}])
def test_unusable_credential_values_refuse_startup(environ: dict[str, str]) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        Credentials([CredentialRule("email", "api.example.com", "Authorization", "TOKEN")], environ)
    assert caught.value.reason == "EGRESS_CONFIG_INVALID"
    assert "$TOKEN" in caught.value.message
    for value in environ.values():
        if value:
            assert value not in caught.value.message


@pytest.mark.asyncio
async def test_resolve_answers_listed_hosts_from_the_table_and_others_from_the_resolver(tmp_path: pathlib.Path) -> None:
    config = load_egress_config(_write(tmp_path, {"resolve": {"API.Example.com.": ["127.0.0.1", "::1"]}}))
    assert config.resolve == (("api.example.com", ("127.0.0.1", "::1")),)
    asked: list[str] = []

    async def dns(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"]

    resolve = config.resolve_overrides(dns)
    assert await resolve("api.example.com", 443) == ["127.0.0.1", "::1"]
    assert await resolve("other.example.com", 443) == ["93.184.216.34"] and asked == ["other.example.com"]
    assert EgressConfig().resolve_overrides(dns) is dns


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "resolve must be an object"),
        ({"api.example.com": []}, "non-empty list"),
        ({"api.example.com": ["not-an-ip"]}, "does not appear to be an IPv4 or IPv6 address"),
        ({"bad host!": ["127.0.0.1"]}, "is not a host name"),
    ],
)
def test_a_bad_resolve_table_is_refused(tmp_path: pathlib.Path, value: Any, message: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        load_egress_config(_write(tmp_path, {"resolve": value}))
    assert caught.value.reason == "EGRESS_CONFIG_INVALID" and message in caught.value.message
