"""The object store through a real core, on both backends (catalogue F1, F3–F5).

Raw plugins call `ObjectStoreService` over their own mTLS channels; every
refusal asserts its code, its reason and its one audit record, and what lies
at rest is read straight from the data dir or the database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import sqlalchemy as sa

from support.processes import clean_env
from vivified.core.db import plain_engine
from vivified.core.storage import object_id
from vivified.storage.v1 import object_store_pb2 as pb

from .conftest import PHI_COMPLIANCE, StorageCore, raw_plugin, refusal

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
PUT = "/vivified.storage.v1.ObjectStoreService/PutObject"
GET = "/vivified.storage.v1.ObjectStoreService/GetObject"


def _at_rest(sc: StorageCore) -> bytes:
    """Every byte the core keeps: its data dir's files (objects, SQLite, WAL,
    temp files) and, on PostgreSQL, the objects' rows."""
    blobs = [p.read_bytes() for p in sc.data_dir.rglob("*") if p.is_file()]
    if sc.backend == "database":
        engine = plain_engine(sc.url)
        with engine.connect() as conn:
            blobs += [bytes(r.data) for r in conn.execute(sa.text("SELECT data FROM storage_records"))]
            blobs += [str(tuple(r)).encode() for r in conn.execute(sa.text("SELECT * FROM storage_objects"))]
        engine.dispose()
    return b"\x00".join(blobs)


async def test_put_get_head_list_delete_round_trip_with_one_record_each(storage_core: StorageCore) -> None:
    alice = await raw_plugin(storage_core.core, "alice")
    big = secrets.token_bytes(1024 * 1024 + 17)
    meta = await alice.put("reports/2026/big.bin", big, content_type="application/pdf")
    assert (meta.size, meta.sha256, meta.version, meta.owner_plugin) == (
        len(big),
        hashlib.sha256(big).hexdigest(),
        1,
        "alice",
    )
    assert meta.object_id == object_id("alice", "reports/2026/big.bin")
    got_meta, got = await alice.get("reports/2026/big.bin")
    assert got == big and got_meta is not None and got_meta.content_type == "application/pdf"
    await alice.put("reports/2026/empty", b"")
    assert (await alice.get("reports/2026/empty"))[1] == b""
    again = await alice.put("reports/2026/big.bin", b"v2")
    assert again.version == 2 and (await alice.get("reports/2026/big.bin"))[1] == b"v2"
    for i in range(3):
        await alice.put(f"notes/{i}", b"n")
    page = await alice.stub.ListObjects(pb.ListObjectsRequest(prefix="notes/", page_size=2), timeout=10)
    rest = await alice.stub.ListObjects(
        pb.ListObjectsRequest(prefix="notes/", page_size=2, page_token=page.next_page_token), timeout=10
    )
    assert [o.name for o in page.objects] == ["notes/0", "notes/1"] and [o.name for o in rest.objects] == ["notes/2"]
    assert rest.next_page_token == ""
    head = await alice.stub.HeadObject(pb.HeadObjectRequest(name="notes/1"), timeout=10)
    assert head.metadata.size == 1
    await alice.stub.DeleteObject(pb.DeleteObjectRequest(name="notes/1"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await alice.stub.HeadObject(pb.HeadObjectRequest(name="notes/1"), timeout=10)
    assert refusal(gone.value) == (grpc.StatusCode.NOT_FOUND, "OBJECT_NOT_FOUND")
    # one record per call, naming the object id, never the name
    oid = object_id("alice", "reports/2026/big.bin")
    puts = storage_core.audit(action=PUT, resource=f"object/alice/{oid}")
    gets = storage_core.audit(action=GET, resource=f"object/alice/{oid}")
    assert len(puts) == 2 and len(gets) == 2 and all(r.decision == "allow" for r in puts + gets)
    assert b"reports/2026" not in b"".join(str(tuple(r)).encode() for r in storage_core.audit())


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../b",
        "bad\x00name",
        "x" * 4096,
        "caf\u00e9",
        "cafe\u0301",
        "",
        "a//b",
    ],
)
async def test_f5_unsafe_names_are_refused_and_audited(storage_core: StorageCore, name: str) -> None:
    mallory = await raw_plugin(storage_core.core, "mallory")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await mallory.put(name, b"payload")
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "OBJECT_NAME_INVALID")
    records = storage_core.audit(action=PUT, actor="plugin:mallory")
    assert len(records) == 1 and records[0].outcome == "INVALID_ARGUMENT"
    assert not any(p.name.endswith(".blob") for p in (storage_core.data_dir / "objects").rglob("*"))


@pytest.mark.core_flags("--storage-max-object-bytes", "1048576", "--storage-quota-bytes", "2621440")
async def test_f5_size_and_quota_are_refused_before_the_body(storage_core: StorageCore) -> None:
    bob = await raw_plugin(storage_core.core, "bob")
    body_sent = asyncio.Event()

    async def header_then_wait() -> AsyncIterator[pb.PutObjectRequest]:
        yield pb.PutObjectRequest(header=pb.PutObjectHeader(name="huge", size=50 * 1024 * 1024))
        await asyncio.sleep(30)  # the body would follow; the core must not wait for it
        body_sent.set()
        yield pb.PutObjectRequest(chunk=b"x")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(bob.stub.PutObject(header_then_wait(), timeout=20), 10)
    assert refusal(refused.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OBJECT_TOO_LARGE")
    assert not body_sent.is_set()
    await bob.put("a", b"a" * 1_000_000)
    await bob.put("b", b"b" * 1_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as over:
        await bob.put("c", b"c" * 1_048_576)
    assert refusal(over.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "STORAGE_QUOTA_EXCEEDED")
    await bob.put("a", b"A" * 1_048_576)  # replacing releases the old version's bytes
    # more bytes than declared: refused, nothing stored
    with pytest.raises(grpc.aio.AioRpcError) as mismatch:
        await bob.put("d", b"d" * 10, size=5)
    assert refusal(mismatch.value) == (grpc.StatusCode.INVALID_ARGUMENT, "OBJECT_SIZE_MISMATCH")
    refusals = [r for r in storage_core.audit(action=PUT, actor="plugin:bob") if r.outcome != "OK"]
    assert [r.outcome for r in refusals] == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"]
    listed = await bob.stub.ListObjects(pb.ListObjectsRequest(), timeout=10)
    assert sorted(o.name for o in listed.objects) == ["a", "b"]


async def test_objects_are_private_unless_shared_in_both_manifests(storage_core: StorageCore) -> None:
    core = storage_core.core
    owner = await raw_plugin(core, "owner", storage={"share_with": ["reader"]})
    reader = await raw_plugin(core, "reader", storage={"read_from": ["owner"]})
    stranger = await raw_plugin(core, "stranger", storage={"read_from": ["owner"]})
    await owner.put("private", b"mine")
    await owner.put("shared", b"ours", shared_with=["reader"])
    assert (await reader.get("shared", owner="owner"))[1] == b"ours"
    for who, name in ((reader, "private"), (stranger, "shared")):
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await who.get(name, owner="owner")
        assert refusal(hidden.value) == (grpc.StatusCode.NOT_FOUND, "OBJECT_NOT_FOUND")
    # the owner cannot share beyond its manifest: a deny, recorded once
    with pytest.raises(grpc.aio.AioRpcError) as undeclared:
        await owner.put("leak", b"x", shared_with=["stranger"])
    assert refusal(undeclared.value) == (grpc.StatusCode.PERMISSION_DENIED, "OBJECT_SHARE_NOT_DECLARED")
    denies = storage_core.audit(action=PUT, actor="plugin:owner", decision="deny")
    assert len(denies) == 1 and denies[0].rule_id == "storage-access"


async def test_phi_objects_need_handles_phi_of_every_reader(storage_core: StorageCore) -> None:
    core = storage_core.core
    clinic = await raw_plugin(
        core,
        "clinic",
        traits=["handles_phi", "audit_required", "encryption_required"],
        compliance=PHI_COMPLIANCE,
        storage={"share_with": ["billing"]},
    )
    billing = await raw_plugin(core, "billing", storage={"read_from": ["clinic"]})
    meta = await clinic.put("chart", b"diagnosis", classification="CLASSIFICATION_PHI", shared_with=["billing"])
    assert (await clinic.get("chart"))[1] == b"diagnosis"
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await billing.get("chart", owner="clinic")
    assert refusal(denied.value) == (grpc.StatusCode.PERMISSION_DENIED, "OBJECT_TRAIT_REQUIRED")
    denies = storage_core.audit(action=GET, actor="plugin:billing")
    assert len(denies) == 1 and denies[0].decision == "deny" and denies[0].rule_id == "storage-access"
    with pytest.raises(grpc.aio.AioRpcError) as cannot_write:
        await billing.put("mine", b"x", classification="CLASSIFICATION_PHI")
    assert refusal(cannot_write.value) == (grpc.StatusCode.PERMISSION_DENIED, "OBJECT_TRAIT_REQUIRED")
    # the PHI read is audited with the object id and classification
    reads = storage_core.audit(action=GET, actor="plugin:clinic")
    assert len(reads) == 1 and reads[0].resource == f"object/clinic/{meta.object_id}"
    detail = reads[0].detail if isinstance(reads[0].detail, dict) else json.loads(reads[0].detail)
    assert detail["classification"] == "CLASSIFICATION_PHI" and detail["object_id"] == meta.object_id


async def test_f4_plaintext_canary_is_not_at_rest(storage_core: StorageCore) -> None:
    canary = f"PHI-CANARY-{uuid.uuid4()}".encode()
    alice = await raw_plugin(storage_core.core, "alice")
    body = b"header " + canary + b" " + secrets.token_bytes(200_000) + canary
    await alice.put("scan", body)
    assert (await alice.get("scan"))[1] == body
    assert storage_core.audit(action=PUT)
    assert canary not in _at_rest(storage_core)
    assert canary not in storage_core.core.log().encode()


def _tamper(sc: StorageCore, owner: str, name: str, *, where: str) -> None:
    oid = object_id(owner, name)
    if sc.backend == "directory":
        folder = sc.data_dir / "objects" / owner / oid
        if where == "record":
            blob = next(folder.glob("v*.blob"))
            raw = bytearray(blob.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            blob.write_bytes(bytes(raw))
        else:
            meta = folder / "meta.json"
            text = meta.read_text()
            data = json.loads(text)
            wrapped = bytearray(base64.b64decode(data["wrapped_key"]))
            wrapped[3] ^= 0x80  # inside the wrap's nonce
            data["wrapped_key"] = base64.b64encode(bytes(wrapped)).decode()
            meta.write_text(json.dumps(data))
        return
    engine = plain_engine(sc.url)
    with engine.begin() as conn:
        if where == "record":
            row = conn.execute(
                sa.text("SELECT seq, data FROM storage_records WHERE object_id = :o ORDER BY seq"), {"o": oid}
            ).first()
            assert row is not None
            raw = bytearray(row.data)
            raw[-1] ^= 0x01  # in the tag
            conn.execute(
                sa.text("UPDATE storage_records SET data = :d WHERE object_id = :o AND seq = :s"),
                {"d": bytes(raw), "o": oid, "s": row.seq},
            )
        else:
            wrapped = bytearray(
                conn.execute(
                    sa.text("SELECT wrapped_key FROM storage_objects WHERE object_id = :o"), {"o": oid}
                ).scalar_one()
            )
            wrapped[3] ^= 0x80
            conn.execute(
                sa.text("UPDATE storage_objects SET wrapped_key = :w WHERE object_id = :o"),
                {"w": bytes(wrapped), "o": oid},
            )
    engine.dispose()


async def test_f1_a_flipped_byte_returns_no_plaintext(storage_core: StorageCore) -> None:
    alice = await raw_plugin(storage_core.core, "alice")
    for name in ("record", "wrap"):
        await alice.put(name, b"sensitive " * 20_000)
        _tamper(storage_core, "alice", name, where=name)
        received: list[pb.GetObjectResponse] = []
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            async for message in alice.stub.GetObject(pb.GetObjectRequest(name=name), timeout=10):
                received.append(message)
        assert refusal(lost.value) == (grpc.StatusCode.DATA_LOSS, "OBJECT_INTEGRITY_FAILED")
        assert received == []  # not even the metadata left before the whole object authenticated
        records = storage_core.audit(action=GET, resource=f"object/alice/{object_id('alice', name)}")
        assert [r.outcome for r in records] == ["DATA_LOSS"]


async def test_f1_a_ciphertext_moved_to_another_object_does_not_open(storage_core: StorageCore) -> None:
    if storage_core.backend != "directory":
        pytest.skip("the move is shown on the directory backend's files; the database binds rows the same way")
    alice = await raw_plugin(storage_core.core, "alice")
    await alice.put("one", b"first secret")
    await alice.put("two", b"other value!")
    root = storage_core.data_dir / "objects" / "alice"
    one, two = root / object_id("alice", "one"), root / object_id("alice", "two")
    (two / "meta.json").write_bytes(
        (one / "meta.json")
        .read_bytes()
        .replace(object_id("alice", "one").encode(), object_id("alice", "two").encode())
        .replace(b'"one"', b'"two"')
    )
    next(two.glob("v*.blob")).write_bytes(next(one.glob("v*.blob")).read_bytes())
    with pytest.raises(grpc.aio.AioRpcError) as lost:
        await alice.get("two")
    assert refusal(lost.value) == (grpc.StatusCode.DATA_LOSS, "OBJECT_INTEGRITY_FAILED")


def _kek_ids(sc: StorageCore) -> dict[str, str]:
    if sc.backend == "directory":
        return {
            m.parent.name: json.loads(m.read_text())["kek_id"] for m in (sc.data_dir / "objects").glob("*/*/meta.json")
        }
    engine = plain_engine(sc.url)
    with engine.connect() as conn:
        found = {r.object_id: r.kek_id for r in conn.execute(sa.text("SELECT object_id, kek_id FROM storage_objects"))}
    engine.dispose()
    return found


def _rewrap(sc: StorageCore, *extra: str) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "vivified.core.cli",
        "storage",
        "rewrap",
        "--data-dir",
        str(sc.data_dir),
        "--storage-backend",
        sc.backend,
        "--database-url",
        sc.url,
        *extra,
    ]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())


async def test_f3_rotation_keeps_objects_readable_and_rewrap_resumes_after_kill_9(storage_core: StorageCore) -> None:
    alice = await raw_plugin(storage_core.core, "alice")
    bodies = {f"doc/{i:03d}": os.urandom(64) for i in range(120)}
    for name, body in bodies.items():
        await alice.put(name, body)
    (old_kek,) = set(_kek_ids(storage_core).values())
    key_file = storage_core.data_dir / "config" / "secrets.key"
    new_key = base64.b64encode(secrets.token_bytes(32)).decode()
    key_file.write_text(new_key + "\n" + key_file.read_text())
    storage_core.restart()
    alice = await raw_plugin(storage_core.core, "alice")
    fresh = await alice.put("doc/new", b"after rotation")
    kek = _kek_ids(storage_core)
    assert kek[fresh.object_id] != old_kek  # new objects use the new key at once
    new_kek = kek[fresh.object_id]
    assert (await alice.get("doc/007"))[1] == bodies["doc/007"]  # old ones still open

    first = _rewrap(storage_core, "--batch", "3")
    assert first.stderr is not None
    await asyncio.to_thread(first.stderr.readline)  # one batch done: now kill it mid-job
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)  # reaps it and closes its pipes
    assert first.returncode == -signal.SIGKILL
    partly = _kek_ids(storage_core)
    assert 0 < sum(1 for k in partly.values() if k == new_kek) - 1 < len(bodies)
    second = _rewrap(storage_core, "--json")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert all(k == new_kek for k in _kek_ids(storage_core).values())
    for name in ("doc/000", "doc/007", "doc/119", "doc/new"):
        assert (await alice.get(name))[1] == (bodies.get(name) or b"after rotation")
    # with the old key removed, everything still opens: nothing was left behind
    key_file.write_text(new_key + "\n")
    storage_core.restart()
    alice = await raw_plugin(storage_core.core, "alice")
    assert (await alice.get("doc/050"))[1] == bodies["doc/050"]


async def test_f3_an_object_under_an_unknown_key_is_a_clean_error(storage_core: StorageCore) -> None:
    alice = await raw_plugin(storage_core.core, "alice")
    await alice.put("kept", b"value")
    key_file = storage_core.data_dir / "config" / "secrets.key"
    key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")  # the old key is lost
    storage_core.restart()
    alice = await raw_plugin(storage_core.core, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await alice.get("kept")
    assert refusal(unknown.value) == (grpc.StatusCode.FAILED_PRECONDITION, "STORAGE_KEY_UNKNOWN")


async def test_storage_bytes_and_objects_by_plugin_are_exported(storage_core: StorageCore) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def scraped() -> dict[tuple[str, str], float]:
        url = f"http://{storage_core.core.metrics_address}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (s.name, s.labels.get("plugin", "")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name in ("vivified_storage_bytes", "vivified_storage_objects")
        }

    meter = await raw_plugin(storage_core.core, "meter")
    assert scraped()[("vivified_storage_objects", "meter")] == 0
    await meter.put("a", b"x" * 1000)
    await meter.put("b", b"y" * 24)
    await meter.put("a", b"z" * 10)  # a new version replaces the old one
    samples = scraped()
    assert samples[("vivified_storage_bytes", "meter")] == 34
    assert samples[("vivified_storage_objects", "meter")] == 2
