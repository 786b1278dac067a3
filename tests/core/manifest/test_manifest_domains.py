"""H1 (manifest part): allowed_domains entries that would widen egress are refused."""

from __future__ import annotations

import json

import grpc
import pytest

from support.clients import audit_rows, error_info, manifest_message, operator_channel
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.errors import InvalidArgument
from vivified.core.manifest import (
    load_manifest_bytes,
    validate_allowed_domain,
    validate_manifest,
)
from vivified.core.traits import TraitCatalogue

BAD_ENTRIES = [
    # wildcards that match too much
    "*",
    "*.",
    "*.com",
    "*.*.x.com",
    "a.*.com",
    "*example.com",
    "**.example.com",
    "*.co.uk",
    "*.com.au",
    "*.github.io",
    "co.uk",
    "github.io",
    # public suffixes the old hand-picked list missed (ICANN and private sections of the PSL)
    "*.co.kr",
    "*.com.sg",
    "*.fly.dev",
    "*.s3.us-east-1.amazonaws.com",
    "*.GitLab.io",
    "*.pages.dev",
    "*.x.ck",
    "*.blogspot.com",
    "*.amazonaws.com",
    "co.kr",
    "fly.dev",
    "s3.us-east-1.amazonaws.com",
    # IP literals in every spelling
    "127.0.0.1",
    "10.0.0.1",
    "172.17.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "0.0.0.0",
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",
    "fe80::1%eth0",
    "[fd00::1]",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "127.1",
    "0x7f.0.0.1",
    "0177.0.0.1",
    # local and private names
    "localhost",
    "LOCALHOST",
    "localhost.",
    "*.localhost",
    "api.localhost",
    "localhost.localdomain",
    "printer.local",
    "*.corp.local",
    "db.internal",
    "x.home.arpa",
    "nas.lan",
    "1.0.0.127.in-addr.arpa",
    # not a bare host name
    "http://example.com",
    "https://api.example.com/",
    "example.com:443",
    "example.com/path",
    "user@example.com",
    "example.com?x=1",
    "example.com#frag",
    "exa mple.com",
    " example.com",
    "example.com\n",
    "example.com\x00",
    "example.com\\evil.com",
    "example.com%2f",
    # homoglyphs and raw unicode
    "\u0430pi.example.com",
    "ex\u0430mple.com",
    "例え.jp",
    # malformed labels
    "",
    ".",
    "example",
    "-a.com",
    "a-.com",
    "a..com",
    ".example.com",
    "example.com..",
    "ab--c.com",
    "a" * 64 + ".com",
    "example.123",
    "xn--.com",
    "a_b.example.com",
    ("a" * 60 + ".") * 5 + "com",
]

GOOD_ENTRIES = {
    "api.example.com": "api.example.com",
    "API.Example.COM.": "api.example.com",
    "*.example.com": "*.example.com",
    "*.mail.example.co.uk": "*.mail.example.co.uk",
    "xn--80ak6aa92e.com": "xn--80ak6aa92e.com",
    "example.xn--p1ai": "example.xn--p1ai",
    "a-b.c-d.example.io": "a-b.c-d.example.io",
    "myproject.github.io": "myproject.github.io",
    "1password.com": "1password.com",
    # one registrant's names under a public suffix are fine
    "api.example.co.kr": "api.example.co.kr",
    "*.example.com.sg": "*.example.com.sg",
    "myapp.fly.dev": "myapp.fly.dev",
    "my-bucket.s3.us-east-1.amazonaws.com": "my-bucket.s3.us-east-1.amazonaws.com",
    "*.www.ck": "*.www.ck",  # an exception rule (!www.ck): www.ck is registrable
}


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_h1_allowlist_entries_refused_at_manifest_load(entry: str) -> None:
    data = {
        "id": "email-gateway",
        "name": "Email Gateway",
        "version": "1.0.0",
        "contracts": ["vivified.communication.v1.CommunicationPluginService"],
        "traits": ["communication_plugin", "external_service"],
        "security": {"allowed_domains": ["smtp.example.com", entry]},
    }
    manifest = load_manifest_bytes(json.dumps(data).encode())
    with pytest.raises(InvalidArgument) as info:
        validate_manifest(manifest, TraitCatalogue.load_default())
    assert info.value.reason == "MANIFEST_INVALID"
    assert info.value.message.startswith("security.allowed_domains:")
    assert "refused" in info.value.message


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_h1_allowed_domain_validator_refuses(entry: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_allowed_domain(entry)
    assert (info.value.reason, info.value.domain) == ("MANIFEST_INVALID", "vivified.registry")


@pytest.mark.parametrize(("entry", "normalised"), sorted(GOOD_ENTRIES.items()))
def test_h1_good_entries_normalised(entry: str, normalised: str) -> None:
    assert validate_allowed_domain(entry) == normalised


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("127.0.0.1", "IP address"),
        ("0x7f000001", "IP address"),
        ("[::1]", "IP address"),
        ("*.com", "two labels after"),
        ("*.co.uk", "public suffix"),
        ("*.co.kr", "public suffix"),
        ("*.fly.dev", "public suffix"),
        ("*.amazonaws.com", "public suffixes directly below"),
        ("localhost", "local or private"),
        ("example.com:443", "bare host name"),
        ("\u0430pi.example.com", "IDNA"),
    ],
)
def test_h1_refusal_says_why(entry: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_allowed_domain(entry)
    assert fragment in info.value.message


APPROVE = "/vivified.admin.v1.PluginAdminService/ApprovePlugin"


@pytest.mark.asyncio
@pytest.mark.e2e
@pytest.mark.parametrize("entry", ["*.co.kr", "*.com.sg", "*.fly.dev", "*.s3.us-east-1.amazonaws.com"])
async def test_h1_wildcard_over_a_public_suffix_refused_at_approval(core: CoreProcess, entry: str) -> None:
    plugin_id = "psl-" + entry.replace("*.", "").replace(".", "-")[:40]
    manifest = manifest_message(
        plugin_id,
        traits=["communication_plugin", "external_service"],
        security={"allowed_domains": ["smtp.example.com", entry]},
    )
    before = len(audit_rows(core, action=APPROVE))
    async with operator_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                admin_pb.ApprovePluginRequest(manifest=manifest), timeout=10
            )
        listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(refused.value)
    assert (info.reason, info.domain) == ("MANIFEST_INVALID", "vivified.registry")
    assert (info.metadata["field"], info.metadata["entry"]) == ("security.allowed_domains", entry)
    assert f"'{entry}' refused" in (refused.value.details() or "") and "public suffix" in (
        refused.value.details() or ""
    )
    rows = audit_rows(core, action=APPROVE)[before:]
    assert len(rows) == 1
    assert (rows[0].outcome, rows[0].reason) == ("INVALID_ARGUMENT", "MANIFEST_INVALID")
    assert plugin_id not in {p.plugin_id for p in listed.plugins}
