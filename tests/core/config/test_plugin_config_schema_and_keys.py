"""The manifest's config schema, value checks, and the secrets key ring:
rotation by key id, associated data binding plugin and key, and refusal of
weak or exposed keys (K1, K4)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from support.processes import clean_env
from vivified.core.errors import FailedPrecondition, InvalidArgument
from vivified.core.manifest import load_manifest_bytes, validate_manifest, value_problem
from vivified.core.plugin_config import SecretsKeyInsecure, SecretsKeyring, key_id
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import ConfigField, ConfigFieldType

BASE: dict[str, Any] = {
    "id": "mailer",
    "name": "Mailer",
    "version": "1.0.0",
    "contracts": ["vivified.communication.v1.CommunicationPluginService"],
    "traits": ["communication_plugin"],
}


def _validate(config: list[dict[str, Any]]) -> None:
    manifest = load_manifest_bytes(json.dumps({**BASE, "config": config}).encode())
    validate_manifest(manifest, TraitCatalogue.load_default())


def test_a_valid_schema_passes() -> None:
    _validate(
        [
            {"name": "host", "type": "CONFIG_FIELD_TYPE_STRING", "default_value": "localhost", "description": "relay"},
            {"name": "port", "type": "CONFIG_FIELD_TYPE_INT", "default_value": "-25"},
            {"name": "tls", "type": "CONFIG_FIELD_TYPE_BOOL", "default_value": "false"},
            {"name": "password", "type": "CONFIG_FIELD_TYPE_SECRET", "required": True},
        ]
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([{"name": "Host", "type": "CONFIG_FIELD_TYPE_STRING"}], "config[0].name: 'Host' must be 1-64 characters"),
        (
            [{"name": "a", "type": "CONFIG_FIELD_TYPE_INT"}, {"name": "a", "type": "CONFIG_FIELD_TYPE_INT"}],
            "config[1].name: 'a' is listed twice",
        ),
        ([{"name": "a"}], "config[0].type: must be one of CONFIG_FIELD_TYPE_STRING"),
        (
            [{"name": "a", "type": "CONFIG_FIELD_TYPE_INT", "default_value": "1e3"}],
            "config[0].default_value: must be a 64-bit decimal integer",
        ),
        ([{"name": "a", "type": "CONFIG_FIELD_TYPE_BOOL", "default_value": "yes"}], "must be true or false"),
        ([{"name": "a", "type": "CONFIG_FIELD_TYPE_SECRET", "default_value": "hunter2"}], "a secret has no default"),
        (
            [{"name": "a", "type": "CONFIG_FIELD_TYPE_INT", "required": True, "default_value": "1"}],
            "a required field has no default_value",
        ),
        ([{"name": "a", "type": "CONFIG_FIELD_TYPE_INT", "required": "yes"}], "expected true or false"),
        ([{"name": "a", "type": "CONFIG_FIELD_TYPE_INT", "secret": True}], "secret"),
    ],
)
def test_bad_schemas_refused(config: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _validate(config)
    assert caught.value.reason == "MANIFEST_INVALID" and message in caught.value.message


def test_value_checks_do_not_echo_the_value() -> None:
    secret = ConfigField(name="p", type=ConfigFieldType.CONFIG_FIELD_TYPE_SECRET)
    number = ConfigField(name="n", type=ConfigFieldType.CONFIG_FIELD_TYPE_INT)
    assert value_problem(secret, "any text at all") is None
    assert value_problem(number, str(2**63)) is not None and value_problem(number, str(2**63 - 1)) is None
    problem = value_problem(secret, "x" * 5000)
    assert problem == "longer than 4096 characters"


def _key(seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) % 256 for i in range(32))


def test_rotation_aad_and_key_ids() -> None:
    old = SecretsKeyring([_key(1)])
    kid, sealed = old.seal("mailer", "password", "s3cret")
    assert kid == key_id(_key(1)) and "s3cret" not in sealed
    rotated = SecretsKeyring.from_text(",".join(base64.b64encode(k).decode() for k in (_key(2), _key(1))), "test")
    assert rotated.open("mailer", "password", kid, sealed) == "s3cret"  # old ciphertexts still open
    new_kid, _ = rotated.seal("mailer", "password", "s3cret")
    assert new_kid == rotated.primary_id == key_id(_key(2)) != kid
    for plugin, key in (("other", "password"), ("mailer", "token")):  # moved to another row: refused
        with pytest.raises(FailedPrecondition) as caught:
            rotated.open(plugin, key, kid, sealed)
        assert caught.value.reason == "SECRET_UNREADABLE"
    with pytest.raises(FailedPrecondition, match="does not open"):
        SecretsKeyring([_key(3)]).open("mailer", "password", kid, sealed)  # key removed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"k" * 16).decode(), "has 16 bytes; exactly 32"),
        (base64.b64encode(b"\x01" * 32).decode(), "not random"),
    ],
)
def test_weak_keys_refused(text: str, message: str) -> None:
    with pytest.raises(SecretsKeyInsecure, match=message):
        SecretsKeyring.from_text(text, "VIVIFIED_SECRETS_KEY")


def test_key_file_created_0600_and_exposed_file_refused(tmp_path: pathlib.Path) -> None:
    ring = SecretsKeyring.load(environ_value=None, key_file=None, data_dir=tmp_path)
    path = tmp_path / "config" / "secrets.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert SecretsKeyring.load(environ_value=None, key_file=None, data_dir=tmp_path).primary_id == ring.primary_id
    path.chmod(0o644)
    with pytest.raises(SecretsKeyInsecure) as caught:
        SecretsKeyring.load(environ_value=None, key_file=None, data_dir=tmp_path)
    assert caught.value.reason == "SECRETS_KEY_INSECURE" and "secrets.key" in caught.value.message
    with pytest.raises(SecretsKeyInsecure):
        SecretsKeyring.load(environ_value=None, key_file=tmp_path / "missing.key", data_dir=tmp_path)


def test_core_refuses_to_start_with_a_weak_secrets_key(tmp_path: pathlib.Path) -> None:
    weak = base64.b64encode(b"\x00" * 32).decode()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vivified.core.cli",
            "core",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(VIVIFIED_SECRETS_KEY=weak),
    )
    assert result.returncode == 1
    assert "VIVIFIED_SECRETS_KEY: a secrets key is not random" in result.stderr and weak not in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "data" / "run" / "core.json")
