"""PluginSettings from the environment, and manifest loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from vivified.core.manifest import (
    load_manifest_file,
    manifest_sha256,
    validate_manifest,
)
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.options.v1 import options_pb2
from vivified.sdk import ConfigurationError, PluginSettings, load_manifest

FULL_ENV = {
    "VIVIFIED_MANIFEST": "/etc/plugin/manifest.yaml",
    "VIVIFIED_JOIN_TOKEN": "s3cret-join-token",
    "VIVIFIED_CA_FILE": "/etc/plugin/ca.crt",
    "VIVIFIED_CORE_ADDRESS": "10.0.0.5:9443",
    "VIVIFIED_BOOTSTRAP_ADDRESS": "10.0.0.5:9444",
    "VIVIFIED_TRUST_DOMAIN": "acme.internal",
    "VIVIFIED_LISTEN_HOST": "0.0.0.0",
    "VIVIFIED_ADVERTISE_HOST": "10.0.0.7",
}
REQUIRED = ["VIVIFIED_MANIFEST", "VIVIFIED_JOIN_TOKEN", "VIVIFIED_CA_FILE"]


def test_from_env_reads_every_variable() -> None:
    settings = PluginSettings.from_env(FULL_ENV)
    assert settings.manifest_path == Path("/etc/plugin/manifest.yaml")
    assert settings.join_token == "s3cret-join-token"
    assert settings.ca_file == Path("/etc/plugin/ca.crt")
    assert (settings.core_address, settings.bootstrap_address, settings.trust_domain) == (
        "10.0.0.5:9443",
        "10.0.0.5:9444",
        "acme.internal",
    )
    # In a container the plugin serves on every interface and tells the core its own address.
    assert (settings.listen_host, settings.advertise_host, settings.dial_host) == ("0.0.0.0", "10.0.0.7", "10.0.0.7")


def test_optional_variables_fall_back_to_the_defaults() -> None:
    settings = PluginSettings.from_env({k: FULL_ENV[k] for k in REQUIRED})
    assert (settings.core_address, settings.bootstrap_address, settings.trust_domain) == (
        "127.0.0.1:7443",
        "127.0.0.1:7444",
        "vivified.local",
    )
    assert (settings.listen_host, settings.renew_at_fraction, settings.shutdown_grace_seconds) == (
        "127.0.0.1",
        0.66,
        5.0,
    )
    assert settings.advertise_host is None and settings.dial_host == "127.0.0.1"


@pytest.mark.parametrize("variable", REQUIRED)
@pytest.mark.parametrize("absent_as", ["missing", "empty"])
def test_a_missing_variable_is_named(variable: str, absent_as: str) -> None:
    env = dict(FULL_ENV)
    if absent_as == "missing":
        del env[variable]
    else:
        env[variable] = ""
    with pytest.raises(ConfigurationError) as missing:
        PluginSettings.from_env(env)
    assert variable in missing.value.message
    assert (missing.value.reason, missing.value.domain) == ("SETTING_MISSING", "vivified.sdk")


def test_the_join_token_never_appears_in_repr() -> None:
    settings = PluginSettings.from_env(FULL_ENV)
    assert "s3cret-join-token" not in repr(settings) and "s3cret-join-token" not in str(settings)


@pytest.mark.parametrize(
    "change",
    [
        {"renew_at_fraction": 0.0},
        {"renew_at_fraction": 1.0},
        {"shutdown_grace_seconds": -1.0},
        {"core_address": ""},
        {"join_token": ""},
        {"connect_timeout_seconds": 0.0},
    ],
)
def test_invalid_values_are_refused(change: dict[str, object]) -> None:
    values: dict[str, object] = {"manifest_path": Path("m"), "join_token": "t", "ca_file": Path("c"), **change}
    with pytest.raises(ConfigurationError):
        PluginSettings(**values)  # type: ignore[arg-type]


def test_the_example_manifest_loads_and_passes_the_cores_validation(manifest_path: Path) -> None:
    manifest = load_manifest(manifest_path)
    assert (manifest.id, manifest.version) == ("example-echo", "0.1.0")
    assert list(manifest.contracts) == ["vivified.communication.v1.CommunicationPluginService"]
    assert list(manifest.traits) == ["communication_plugin"]
    assert list(manifest.compliance.data_classifications) == [options_pb2.CLASSIFICATION_INTERNAL]
    assert manifest.compliance.retention_days == 30
    # The core reads the same file to the same message, so the approved sha256 matches what the SDK sends.
    core_view = load_manifest_file(manifest_path)
    validate_manifest(core_view, TraitCatalogue.load_default())
    assert manifest_sha256(manifest) == manifest_sha256(core_view)


def test_a_json_manifest_loads(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(
        '{"id": "json-plugin", "name": "J", "version": "1.0.0", "contracts": [], "traits": ["network_isolated"]}'
    )
    assert load_manifest(path) == PluginManifest(
        id="json-plugin", name="J", version="1.0.0", traits=["network_isolated"]
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("id: x\nsuperuser: true\n", "superuser"),
        ("- id\n- x\n", "mapping"),
        ("id: [unclosed\n", "not valid"),
        ("id: x\ncompliance:\n  retention_days: forever\n", "retention_days"),
        ('{"id": "x",}', "not valid"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as refused:
        load_manifest(path)
    assert refused.value.reason == "MANIFEST_INVALID"
    assert expected in refused.value.message


def test_an_unreadable_or_oversized_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read manifest"):
        load_manifest(tmp_path / "absent.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("description: " + "x" * 70_000 + "\n")
    with pytest.raises(ConfigurationError, match="larger than"):
        load_manifest(big)
