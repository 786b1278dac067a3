"""Bad input at registration (docs/security.md I1–I4) against a real core: refused
with the right status and reason, nothing persisted, no certificate issued."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.clients import (
    approve,
    audit_rows,
    bootstrap_channel,
    error_info,
    manifest_message,
    new_csr,
    operator_channel,
    register,
)
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

REGISTER = "/vivified.registry.v1.PluginRegistryService/Register"


async def _register_error(core: CoreProcess, request: reg_pb.RegisterRequest) -> grpc.aio.AioRpcError:
    async with bootstrap_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reg_grpc.PluginRegistryServiceStub(channel).Register(request, timeout=10)
    return caught.value


async def _plugin_ids(core: CoreProcess) -> set[str]:
    async with operator_channel(core) as channel:
        listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return {p.plugin_id for p in listed.plugins}


async def test_i4_join_token_works_once(core: CoreProcess) -> None:
    manifest = manifest_message("token-once")
    approval = await approve(core, manifest)
    await register(core, manifest, approval.join_token)
    err = await _register_error(
        core,
        reg_pb.RegisterRequest(
            manifest=manifest, csr_pem=new_csr()[0].decode(), join_token=approval.join_token, endpoint="127.0.0.1:1"
        ),
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "JOIN_TOKEN_INVALID"
    assert "already used" in (err.details() or "")


async def test_i4_token_for_another_plugin_or_expired(core: CoreProcess) -> None:
    other = manifest_message("token-owner")
    approval = await approve(core, other)
    thief = manifest_message("token-thief")
    await approve(core, thief)
    before = len(audit_rows(core, action=REGISTER))
    err = await _register_error(
        core,
        reg_pb.RegisterRequest(
            manifest=thief, csr_pem=new_csr()[0].decode(), join_token=approval.join_token, endpoint="127.0.0.1:1"
        ),
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "JOIN_TOKEN_INVALID"
    rows = audit_rows(core, action=REGISTER)
    assert len(rows) == before + 1 and rows[-1].outcome == "UNAUTHENTICATED"
    assert rows[-1].resource == "plugin/token-thief"

    short = manifest_message("token-expiry")
    expiring = await approve(core, short, token_ttl_seconds=1)
    await asyncio.sleep(1.2)  # the join token's expiry is checked against the core's wall clock
    err = await _register_error(
        core,
        reg_pb.RegisterRequest(
            manifest=short, csr_pem=new_csr()[0].decode(), join_token=expiring.join_token, endpoint="127.0.0.1:1"
        ),
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (err.details() or "")


@pytest.mark.slow
async def test_i4_parallel_registrations_with_one_token_exactly_one_wins(core: CoreProcess) -> None:
    manifest = manifest_message("token-race")
    approval = await approve(core, manifest)
    csr = new_csr()[0].decode()
    request = reg_pb.RegisterRequest(
        manifest=manifest, csr_pem=csr, join_token=approval.join_token, endpoint="127.0.0.1:1"
    )
    started = time.monotonic()
    results: list[object] = []
    pending = 1000
    async with bootstrap_channel(core) as channel:
        stub = reg_grpc.PluginRegistryServiceStub(channel)
        while pending:
            batch = await asyncio.gather(
                *(stub.Register(request, timeout=120) for _ in range(pending)), return_exceptions=True
            )
            # Streams over the core's concurrent-stream cap are refused by HTTP/2
            # (REFUSED_STREAM) before any handler runs; send those again.
            refused = [r for r in batch if isinstance(r, grpc.aio.AioRpcError) and "RST_STREAM" in (r.details() or "")]
            results.extend(r for r in batch if r not in refused)
            pending = len(refused)
    wins = [r for r in results if isinstance(r, reg_pb.RegisterResponse)]
    losses = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(wins) == 1, f"{len(wins)} registrations succeeded with one token"
    assert len(losses) == 999
    assert {e.code() for e in losses} == {grpc.StatusCode.UNAUTHENTICATED}
    assert time.monotonic() - started < 120


@pytest.mark.parametrize(
    "bad_id", ["../core", "core", "", "x" * 300, "nul\x00id", "rtl\u202eid", "dеmo-plugin", "UPPER", "-dash"]
)
async def test_i2_plugin_id_abuse_refused_and_nothing_persisted(core: CoreProcess, bad_id: str) -> None:
    manifest = manifest_message("placeholder")
    manifest.id = bad_id
    err = await _register_error(
        core,
        reg_pb.RegisterRequest(
            manifest=manifest, csr_pem=new_csr()[0].decode(), join_token="vjt_x", endpoint="127.0.0.1:1"
        ),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).reason == "MANIFEST_INVALID"
    assert bad_id not in await _plugin_ids(core)
    async with operator_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                admin_pb.ApprovePluginRequest(manifest=manifest), timeout=5
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_i2_duplicate_id_needs_replace(core: CoreProcess) -> None:
    manifest = manifest_message("dup-id")
    await approve(core, manifest)
    async with operator_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as dup:
            await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                admin_pb.ApprovePluginRequest(manifest=manifest), timeout=5
            )
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(dup.value).reason == "PLUGIN_ALREADY_EXISTS"


async def test_manifest_must_match_approval_and_traits_must_be_granted(core: CoreProcess) -> None:
    approved = manifest_message("approved-shape")
    approval = await approve(core, approved)
    changed = manifest_message("approved-shape", version="0.2.0")
    err = await _register_error(
        core,
        reg_pb.RegisterRequest(
            manifest=changed, csr_pem=new_csr()[0].decode(), join_token=approval.join_token, endpoint="127.0.0.1:1"
        ),
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err).reason == "MANIFEST_NOT_APPROVED"
    # The token was not consumed by the refused attempt: the approved manifest still registers.
    await register(core, approved, approval.join_token)

    wants_more = manifest_message("narrow-grant", traits=["communication_plugin", "handles_confidential"])
    narrow = await approve(core, wants_more, granted_traits=["communication_plugin"])
    err = await _register_error(
        core,
        reg_pb.RegisterRequest(
            manifest=wants_more, csr_pem=new_csr()[0].decode(), join_token=narrow.join_token, endpoint="127.0.0.1:1"
        ),
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err).reason == "TRAIT_NOT_GRANTED"


@pytest.mark.parametrize("trait", ["admin", "root", "system", "plugin_manager", "no_such_trait"])
async def test_dangerous_or_unknown_traits_refused_at_approval(core: CoreProcess, trait: str) -> None:
    manifest = manifest_message("greedy", traits=["communication_plugin", trait])
    async with operator_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                admin_pb.ApprovePluginRequest(manifest=manifest), timeout=5
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "MANIFEST_INVALID"
    assert trait in (refused.value.details() or "")


def _csr_with(key: ec.EllipticCurvePrivateKey, build: x509.CertificateSigningRequestBuilder) -> str:
    return build.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


async def test_i3_csr_abuse_refused_and_token_survives(core: CoreProcess) -> None:
    manifest = manifest_message("csr-abuse")
    approval = await approve(core, manifest)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "csr-abuse")])
    base = x509.CertificateSigningRequestBuilder().subject_name(name)
    bad_csrs = {
        "ca": base.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True),
        "other-plugin": base.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://vivified.local/plugin/other")]),
            critical=False,
        ),
        "dns": base.add_extension(x509.SubjectAlternativeName([x509.DNSName("core.vivified.local")]), critical=False),
    }
    for label, builder in bad_csrs.items():
        err = await _register_error(
            core,
            reg_pb.RegisterRequest(
                manifest=manifest,
                csr_pem=_csr_with(key, builder),
                join_token=approval.join_token,
                endpoint="127.0.0.1:1",
            ),
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert error_info(err).reason == "CSR_INVALID", label
    for garbage in ("not a csr", new_csr()[0].decode().replace("A", "B", 5)):
        err = await _register_error(
            core,
            reg_pb.RegisterRequest(
                manifest=manifest, csr_pem=garbage, join_token=approval.join_token, endpoint="127.0.0.1:1"
            ),
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _plugin_ids(core) >= {"csr-abuse"}
    identity = await register(core, manifest, approval.join_token)
    assert identity.leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


async def test_endpoint_must_be_host_and_port(core: CoreProcess) -> None:
    manifest = manifest_message("bad-endpoint")
    approval = await approve(core, manifest)
    # A core without --plugin-socket-dir accepts no Unix endpoint at all.
    for endpoint in ("", "no-port", "127.0.0.1:0", "127.0.0.1:70000", "http://x:1", "a b:1", "unix:/tmp/x.sock"):
        err = await _register_error(
            core,
            reg_pb.RegisterRequest(
                manifest=manifest, csr_pem=new_csr()[0].decode(), join_token=approval.join_token, endpoint=endpoint
            ),
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, endpoint
        assert error_info(err).reason == "INVALID_REQUEST", endpoint
