"""Envelope encryption and the store's rules without a core (catalogue F1, F2).

The same rules run through a real core in test_object_store_e2e.py; here the
bounds that need many operations or a small injected limit."""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import AsyncIterator

import pytest

from vivified.core.clock import ManualClock
from vivified.core.errors import VivifiedError
from vivified.core.plugin_config import SecretsKeyring
from vivified.core.storage import Actor, DirectoryBackend, ObjectStore, PutHeader, StorageLimits
from vivified.core.storage._envelope import ObjectRef, Opener, Sealer, new_data_key, wrap
from vivified.options.v1 import options_pb2

pytestmark = pytest.mark.asyncio


def _keyring() -> SecretsKeyring:
    return SecretsKeyring([secrets.token_bytes(32)])


def _store(tmp_path: pathlib.Path, keyring: SecretsKeyring, **limits: int) -> ObjectStore:
    return ObjectStore(
        DirectoryBackend(tmp_path / "objects"),
        keyring,
        ManualClock(),
        limits=StorageLimits(**limits),
        share_allowed=lambda _o, _r: True,
    )


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _header(name: str, size: int, classification: int = options_pb2.CLASSIFICATION_INTERNAL) -> PutHeader:
    return PutHeader(name, "text/plain", size, classification, None, ())


ALICE = Actor("alice", frozenset({"handles_phi", "audit_required"}), frozenset(), frozenset())


async def test_f2_no_repeated_nonce_in_100000_key_wraps() -> None:
    keyring = _keyring()
    ref = ObjectRef("alice", "0" * 32, 1)
    nonces = {wrap(keyring, ref, b"k" * 32)[1][:12] for _ in range(100_000)}
    assert len(nonces) == 100_000


async def test_f2_record_nonces_are_a_counter_under_a_fresh_key() -> None:
    ref = ObjectRef("alice", "0" * 32, 1)
    key_a, key_b = new_data_key(), new_data_key()
    assert key_a != key_b  # a fresh data key per object version
    sealer = Sealer(key_a, ref)
    records = [sealer.seal(b"same plaintext", final=i == 999) for i in range(1000)]
    assert len(set(records)) == 1000  # counter nonces: the same plaintext never seals the same


async def test_f2_a_key_that_wrapped_its_limit_refuses_more_until_rotated(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path, _keyring(), wrap_limit=3)
    for i in range(3):
        await store.put(ALICE, _header(f"o{i}", 1), _chunks(b"x"))
    with pytest.raises(VivifiedError) as refused:
        await store.put(ALICE, _header("o3", 1), _chunks(b"x"))
    assert (refused.value.reason, refused.value.code.name) == ("STORAGE_KEY_ROTATION_REQUIRED", "FAILED_PRECONDITION")


async def test_f1_truncated_or_reordered_records_fail(tmp_path: pathlib.Path) -> None:
    ref = ObjectRef("alice", "0" * 32, 1)
    key = new_data_key()
    sealer = Sealer(key, ref)
    records = [sealer.seal(b"a", final=False), sealer.seal(b"b", final=False), sealer.seal(b"c", final=True)]
    with pytest.raises(VivifiedError):  # dropping the last record: the new last one is not marked final
        Opener(key, ref, 2).open(1, records[1])
    with pytest.raises(VivifiedError):  # swapping records
        Opener(key, ref, 3).open(0, records[1])
    with pytest.raises(VivifiedError):  # another version of the same object
        Opener(key, ObjectRef("alice", "0" * 32, 2), 3).open(0, records[0])
    assert Opener(key, ref, 3).open(2, records[2]) == b"c"


async def test_a_delegated_user_needs_the_trait_too(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path, _keyring())
    await store.put(ALICE, _header("chart", 4, options_pb2.CLASSIFICATION_PHI), _chunks(b"data"))
    as_viewer = Actor("alice", ALICE.traits, frozenset(), frozenset(), user_traits=frozenset({"viewer"}))
    with pytest.raises(VivifiedError) as refused:
        await store.find(as_viewer, "chart")
    assert refused.value.reason == "OBJECT_TRAIT_REQUIRED" and "user" in refused.value.message
    as_doctor = Actor("alice", ALICE.traits, frozenset(), frozenset(), user_traits=frozenset({"handles_phi"}))
    found = await store.find(as_doctor, "chart")
    assert b"".join([p async for p in store.read(found)]) == b"data"


async def test_a_write_that_fails_midway_leaves_nothing(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path, _keyring())

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 70_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(ALICE, _header("half", 200_000), broken())
    assert [
        p for p in (tmp_path / "objects").rglob("*") if p.is_file() and p.parent.name != ".keys" and p.name != ".lock"
    ] == []
