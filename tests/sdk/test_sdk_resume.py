"""The SDK's side of restarting without a new join token (catalogue M3),
against the fake core over real TLS: the key and certificate are stored in
the data dir (0600) after Register and each renewal; a start that finds them
resumes; a final refusal removes them and falls back to the join token, or
fails typed without one; a disabled plugin keeps them; a stop removes them."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import pathlib
from typing import Any

import grpc
import pytest

from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import (
    ConfigurationError,
    PermissionDeniedError,
    PluginRuntime,
    PluginSettings,
    UnauthenticatedError,
)
from vivified.sdk._identity import accept_issued, new_key_and_csr
from vivified.sdk._stored_identity import IdentityStore
from vivified.sdk.testing import FakeCore, LocalCA

pytestmark = pytest.mark.asyncio

SPIFFE = "spiffe://vivified.local/plugin/example-echo"


@pytest.fixture
def stored_settings(settings: PluginSettings, tmp_path: pathlib.Path) -> PluginSettings:
    return dataclasses.replace(settings, data_dir=tmp_path / "data")


def identity_file(settings: PluginSettings) -> pathlib.Path:
    assert settings.data_dir is not None
    return settings.data_dir / "vivified-identity.json"


async def crashed_runtime(start_plugin: Any, settings: PluginSettings) -> PluginRuntime:
    """A started runtime whose stored identity a second process would find: a
    crash is a process that never stops, so this one is stopped only at the end."""
    runtime: PluginRuntime = await start_plugin(settings_=settings)
    assert identity_file(settings).exists()
    return runtime


async def test_m3_a_restart_without_a_token_resumes_with_the_stored_certificate(
    fake_core: FakeCore, start_plugin: Any, stored_settings: PluginSettings
) -> None:
    first = await crashed_runtime(start_plugin, stored_settings)
    assert oct(identity_file(stored_settings).stat().st_mode & 0o777) == "0o600"
    assert json.loads(identity_file(stored_settings).read_text())["spiffe_id"] == SPIFFE
    restarted = PluginRuntime([EchoCommunicationPlugin()], dataclasses.replace(stored_settings, join_token=""))
    await restarted.start()
    try:
        assert restarted.resumed and not first.resumed
        assert fake_core.resumes == [(SPIFFE, restarted.endpoint)]
        assert len(fake_core.registrations) == 1
        assert restarted.certificate_pem == first.certificate_pem
        await asyncio.wait_for(_inits(fake_core, 2), 15)
        assert fake_core.init_results == [True, True]
    finally:
        await restarted.stop("test over")
    assert not identity_file(stored_settings).exists()  # a stop deregisters: nothing left to resume


async def _inits(fake_core: FakeCore, count: int) -> None:
    while len(fake_core.init_results) < count:
        await asyncio.sleep(0.05)


async def test_m3_a_final_refusal_removes_the_stored_identity_and_registers_with_the_token(
    fake_core: FakeCore, start_plugin: Any, stored_settings: PluginSettings
) -> None:
    await crashed_runtime(start_plugin, stored_settings)
    fake_core.resume_refusal = (grpc.StatusCode.PERMISSION_DENIED, "PLUGIN_REVOKED")
    restarted: PluginRuntime = await start_plugin(settings_=stored_settings)
    assert not restarted.resumed and fake_core.refused == ["PLUGIN_REVOKED"]
    assert len(fake_core.registrations) == 2
    stored = json.loads(identity_file(stored_settings).read_text())
    assert stored["chain_pem"].startswith(restarted.certificate_pem.decode().strip())  # the new registration's


async def test_m3_a_final_refusal_without_a_token_fails_typed_and_removes_the_stored_identity(
    fake_core: FakeCore, start_plugin: Any, stored_settings: PluginSettings
) -> None:
    await crashed_runtime(start_plugin, stored_settings)
    fake_core.resume_refusal = (grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_REVOKED")
    restarted = PluginRuntime([EchoCommunicationPlugin()], dataclasses.replace(stored_settings, join_token=""))
    with pytest.raises(UnauthenticatedError) as refused:
        await restarted.start()
    assert refused.value.reason == "CERTIFICATE_REVOKED" and "no join token" in refused.value.message
    assert restarted.closed and not identity_file(stored_settings).exists()
    assert len(fake_core.registrations) == 1


async def test_m3_a_disabled_plugin_keeps_its_stored_identity(
    fake_core: FakeCore, start_plugin: Any, stored_settings: PluginSettings
) -> None:
    await crashed_runtime(start_plugin, stored_settings)
    fake_core.resume_refusal = (grpc.StatusCode.PERMISSION_DENIED, "PLUGIN_DISABLED")
    restarted = PluginRuntime([EchoCommunicationPlugin()], dataclasses.replace(stored_settings, join_token=""))
    with pytest.raises(PermissionDeniedError) as refused:
        await restarted.start()
    assert refused.value.reason == "PLUGIN_DISABLED"
    assert identity_file(stored_settings).exists()  # it may be enabled again and resume then


async def test_m3_no_token_and_nothing_stored_is_a_configuration_error(stored_settings: PluginSettings) -> None:
    runtime = PluginRuntime([EchoCommunicationPlugin()], dataclasses.replace(stored_settings, join_token=""))
    with pytest.raises(ConfigurationError) as missing:
        await runtime.start()
    assert missing.value.reason == "SETTING_MISSING" and "VIVIFIED_JOIN_TOKEN" in missing.value.message
    with pytest.raises(ConfigurationError):
        PluginSettings(manifest_path=stored_settings.manifest_path, ca_file=stored_settings.ca_file)


async def test_m3_an_expired_or_foreign_stored_certificate_is_not_offered_and_is_removed(
    ca: LocalCA, tmp_path: pathlib.Path
) -> None:
    requested = new_key_and_csr("example-echo")
    leaf = ca.sign_csr(requested.csr_pem, "example-echo", lifetime=dt.timedelta(minutes=10))
    received = dt.datetime.now(dt.UTC)
    issued = accept_issued(leaf.chain_pem.decode(), requested, SPIFFE, received)
    store = IdentityStore(tmp_path)
    margin = dt.timedelta(seconds=1)
    store.save(SPIFFE, issued, ca.root_pem, "127.0.0.1:7443")
    loaded = store.load(SPIFFE, received, margin)
    assert loaded is not None and loaded.issued.leaf == issued.leaf and loaded.roots_pem == ca.root_pem
    assert loaded.issued.received_at == received
    assert store.load(SPIFFE, issued.not_after - margin / 2, margin) is None  # expires within the margin
    assert not store.path.exists()
    store.save(SPIFFE, issued, ca.root_pem, "127.0.0.1:7443")
    assert store.load("spiffe://vivified.local/plugin/another", received, margin) is None
    assert not store.path.exists()
    store.save(SPIFFE, issued, ca.root_pem, "127.0.0.1:7443")
    other = new_key_and_csr("example-echo")
    document = json.loads(store.path.read_text())
    document["key_pem"] = other.key_pem.decode()  # a key the certificate does not certify
    store.path.write_text(json.dumps(document))
    assert store.load(SPIFFE, received, margin) is None and not store.path.exists()


async def test_m3_each_renewal_replaces_the_stored_certificate(
    ca: LocalCA, tmp_path: pathlib.Path, manifest_path: pathlib.Path
) -> None:
    async with FakeCore(ca, leaf_lifetime=dt.timedelta(seconds=3)) as short:
        settings = short.settings(
            tmp_path, manifest_path, data_dir=tmp_path / "data", renew_at_fraction=0.3, shutdown_grace_seconds=0.5
        )
        runtime = PluginRuntime([EchoCommunicationPlugin()], settings)
        await runtime.start()
        try:
            while runtime.renewals < 1:
                await asyncio.sleep(0.05)
            stored = json.loads(identity_file(settings).read_text())
            assert stored["chain_pem"].startswith(runtime.certificate_pem.decode().strip())
            assert runtime.certificate_pem != short.issued[0].cert_pem
        finally:
            await runtime.stop("test over")


async def test_m3_the_join_token_is_optional_only_with_a_data_dir() -> None:
    base = {"VIVIFIED_MANIFEST": "m.yaml", "VIVIFIED_CA_FILE": "ca.crt"}
    settings = PluginSettings.from_env({**base, "VIVIFIED_DATA_DIR": "/var/lib/plugin"})
    assert settings.join_token == "" and settings.data_dir == pathlib.Path("/var/lib/plugin")
    with pytest.raises(ConfigurationError) as missing:
        PluginSettings.from_env(base)
    assert missing.value.reason == "SETTING_MISSING" and "VIVIFIED_JOIN_TOKEN" in missing.value.message
