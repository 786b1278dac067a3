"""TOTP per RFC 6238 (Appendix B SHA-1 vectors), the ±1 step window and replay."""

from __future__ import annotations

import urllib.parse

import pytest

from vivified.core.identity import hotp, match_step, provisioning_uri, totp
from vivified.core.identity._totp import decode_secret, encode_secret

RFC_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    "epoch,expected",
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc6238_sha1_vectors(epoch: int, expected: str) -> None:
    assert totp(RFC_SECRET, epoch, digits=8) == expected


def test_rfc4226_hotp_vectors() -> None:
    assert [hotp(RFC_SECRET, c) for c in range(3)] == ["755224", "287082", "359152"]


def test_window_is_one_step_each_way() -> None:
    now = 1_700_000_000
    step = now // 30
    for delta, accepted in ((-2, False), (-1, True), (0, True), (1, True), (2, False)):
        code = hotp(RFC_SECRET, step + delta)
        assert (match_step(RFC_SECRET, code, now, 0) is not None) is accepted


def test_used_step_and_earlier_steps_are_refused() -> None:
    now = 1_700_000_000
    step = now // 30
    code = hotp(RFC_SECRET, step)
    assert match_step(RFC_SECRET, code, now, 0) == step
    assert match_step(RFC_SECRET, code, now, step) is None  # replay
    assert match_step(RFC_SECRET, hotp(RFC_SECRET, step - 1), now, step) is None
    assert match_step(RFC_SECRET, hotp(RFC_SECRET, step + 1), now, step) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", " 12345"])
def test_malformed_codes(code: str) -> None:
    assert match_step(RFC_SECRET, code, 1_700_000_000, 0) is None


def test_provisioning_uri() -> None:
    uri = provisioning_uri(RFC_SECRET, "alice@example.org", "vivified-core")
    parsed = urllib.parse.urlparse(uri)
    assert (parsed.scheme, parsed.netloc) == ("otpauth", "totp")
    assert urllib.parse.unquote(parsed.path) == "/vivified-core:alice@example.org"
    query = dict(urllib.parse.parse_qsl(parsed.query))
    assert query == {
        "secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "issuer": "vivified-core",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }
    assert decode_secret(encode_secret(RFC_SECRET)) == RFC_SECRET
