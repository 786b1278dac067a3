"""The SDK's side of the conformance control hook (docs/plugin-protocol.md §11):
off without VIVIFIED_CONFORMANCE_CONTROL; with it, the suite's events get the
verdict the suite asked for (and are recorded), other events are left to the
plugin, Init is refused while the .hold-init file exists, and the error probes
record the typed error each refusal became. Through a real core:
tests/conformance/test_conformance_control.py."""

from __future__ import annotations

import json
import pathlib

import grpc
import pytest

from vivified.sdk import PermissionDeniedError, PluginSettings
from vivified.sdk._conformance import ConformanceControl, control_from


def _records(path: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_hook_is_off_unless_the_variable_names_a_file(tmp_path: pathlib.Path) -> None:
    base = {"VIVIFIED_MANIFEST": "m.yaml", "VIVIFIED_JOIN_TOKEN": "t", "VIVIFIED_CA_FILE": "ca.crt"}
    assert PluginSettings.from_env(base).conformance_control == ""
    assert control_from("") is None
    path = tmp_path / "control.jsonl"
    settings = PluginSettings.from_env({**base, "VIVIFIED_CONFORMANCE_CONTROL": str(path)})
    assert isinstance(control_from(settings.conformance_control), ConformanceControl)


def test_suite_events_get_the_asked_verdict_and_others_are_left_alone(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "control.jsonl"
    control = ConformanceControl(path)
    assert control.delivery("user-u-1", "vivified.events.v1.UserCreated", 1) is None
    assert control.delivery("conformance-ack-1", "vivified.events.v1.UserCreated", 1) is True
    assert control.delivery("conformance-nack-1", "vivified.events.v1.UserCreated", 1) is False
    assert control.delivery("conformance-nack-1", "vivified.events.v1.UserCreated", 2) is True
    assert [(r["event_id"], r["attempt"], r["action"]) for r in _records(path)] == [
        ("conformance-ack-1", 1, "ack"),
        ("conformance-nack-1", 1, "nack"),
        ("conformance-nack-1", 2, "ack"),
    ]


def test_init_is_held_while_the_hold_file_exists(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "control.jsonl"
    control = ConformanceControl(path)
    hold = tmp_path / "control.jsonl.hold-init"
    hold.touch()
    assert control.init_held()
    hold.unlink()
    assert not control.init_held()
    assert _records(path) == [{"check": "init", "action": "refused"}]


@pytest.mark.asyncio
async def test_error_probes_record_the_typed_error_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "control.jsonl"
    control = ConformanceControl(path)
    calls: list[str] = []

    async def call(target: str, request: object) -> object:
        calls.append(target)
        raise PermissionDeniedError("no", reason="POLICY_DENIED", domain="vivified.policy", metadata={"rule_id": "r-1"})

    async def fetch(request: object) -> object:
        raise RuntimeError("not a typed error")

    await control.probe_errors(call, fetch)
    await control.probe_errors(call, fetch)  # once per process
    assert calls == ["conformance-absent"]
    call_record, fetch_record = _records(path)
    assert call_record == {
        "check": "error",
        "operation": "call",
        "error": "PermissionDeniedError",
        "code": grpc.StatusCode.PERMISSION_DENIED.name,
        "reason": "POLICY_DENIED",
        "domain": "vivified.policy",
        "metadata": {"rule_id": "r-1"},
    }
    assert (fetch_record["operation"], fetch_record["error"], fetch_record["code"]) == ("fetch", "RuntimeError", "")
