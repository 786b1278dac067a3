"""The database backend: objects in the core's database (PostgreSQL for
several replicas; SQLite works too), sealed records as chunk rows.

`storage_objects` holds one row per current object version (metadata and
wrapped data key); `storage_records` the sealed records of each version. A
write inserts its records under a version number no row names yet, then in
one transaction moves the object row to that version (only if it is newer)
and deletes the older version's records; until then readers see the old
version. Rows hold ciphertext only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from vivified.core.db import metadata
from vivified.core.storage._backend import StoredObject

_BATCH = 16  # sealed records per insert: 1 MiB of content

_meta = metadata  # the core's one schema (checked against the migrations)
OBJECTS = sa.Table(
    "storage_objects",
    _meta,
    sa.Column("owner", sa.String(63), primary_key=True),
    sa.Column("object_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("classification", sa.Integer, nullable=False),
    sa.Column("retain_until_ms", sa.BigInteger, nullable=True),
    sa.Column("shared_with", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("kek_id", sa.String(32), nullable=False),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
)
RECORDS = sa.Table(
    "storage_records",
    _meta,
    sa.Column("owner", sa.String(63), primary_key=True),
    sa.Column("object_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
KEY_WRAPS = sa.Table(
    "storage_key_wraps",
    _meta,
    sa.Column("kek_id", sa.String(32), primary_key=True),
    sa.Column("wraps", sa.BigInteger, nullable=False),
)


def _row(obj: StoredObject) -> dict[str, object]:
    return {**obj.__dict__, "shared_with": json.dumps(list(obj.shared_with))}


def _obj(row: sa.Row[tuple[object, ...]]) -> StoredObject:
    data = dict(row._mapping)
    data["shared_with"] = tuple(json.loads(str(data["shared_with"])))
    data["wrapped_key"] = bytes(data["wrapped_key"])
    return StoredObject(**data)


class _DatabaseWriter:
    def __init__(self, engine: sa.Engine, owner: str, object_id: str, version: int) -> None:
        self._engine = engine
        self._key = {"owner": owner, "object_id": object_id, "version": version}
        self._seq = 0
        self._pending: list[dict[str, object]] = []

    def append(self, record: bytes) -> None:
        self._pending.append({**self._key, "seq": self._seq, "data": record})
        self._seq += 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            with self._engine.begin() as conn:
                conn.execute(RECORDS.insert(), self._pending)
            self._pending = []

    def commit(self, obj: StoredObject) -> bool:
        self._flush()
        where = (OBJECTS.c.owner == obj.owner) & (OBJECTS.c.object_id == obj.object_id)
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                current = conn.execute(sa.select(OBJECTS.c.version).where(where).with_for_update()).scalar()
            else:
                current = conn.execute(sa.select(OBJECTS.c.version).where(where)).scalar()
            if current is not None and current >= obj.version:
                self._drop(conn)
                return False
            if current is None:
                conn.execute(OBJECTS.insert().values(**_row(obj)))
            else:
                conn.execute(OBJECTS.update().where(where).values(**_row(obj)))
                conn.execute(
                    RECORDS.delete().where(
                        (RECORDS.c.owner == obj.owner)
                        & (RECORDS.c.object_id == obj.object_id)
                        & (RECORDS.c.version != obj.version)
                    )
                )
        return True

    def _drop(self, conn: sa.Connection) -> None:
        conn.execute(
            RECORDS.delete().where(
                (RECORDS.c.owner == self._key["owner"])
                & (RECORDS.c.object_id == self._key["object_id"])
                & (RECORDS.c.version == self._key["version"])
            )
        )

    def abort(self) -> None:
        self._pending = []
        with self._engine.begin() as conn:
            self._drop(conn)


class DatabaseBackend:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def head(self, owner: str, object_id: str) -> StoredObject | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(OBJECTS).where((OBJECTS.c.owner == owner) & (OBJECTS.c.object_id == object_id))
            ).first()
        return _obj(row) if row is not None else None

    def writer(self, owner: str, object_id: str, version: int) -> _DatabaseWriter:
        return _DatabaseWriter(self._engine, owner, object_id, version)

    def records(self, obj: StoredObject) -> Iterator[bytes]:
        where = (
            (RECORDS.c.owner == obj.owner) & (RECORDS.c.object_id == obj.object_id) & (RECORDS.c.version == obj.version)
        )
        seq = 0
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    sa.select(RECORDS.c.seq, RECORDS.c.data)
                    .where(where & (RECORDS.c.seq >= seq))
                    .order_by(RECORDS.c.seq)
                    .limit(16)
                ).all()
            if not rows:
                return
            for row in rows:
                if row.seq != seq:  # a record is missing: the opener sees the gap
                    return
                yield bytes(row.data)
                seq += 1

    def list(self, owner: str, prefix: str, after: str, limit: int) -> Sequence[StoredObject]:
        query = sa.select(OBJECTS).where((OBJECTS.c.owner == owner) & (OBJECTS.c.name > after))
        if prefix:
            query = query.where(OBJECTS.c.name.startswith(prefix, autoescape=True))
        with self._engine.connect() as conn:
            return [_obj(r) for r in conn.execute(query.order_by(OBJECTS.c.name).limit(limit))]

    def delete(self, owner: str, object_id: str) -> bool:
        with self._engine.begin() as conn:
            gone = conn.execute(
                OBJECTS.delete().where((OBJECTS.c.owner == owner) & (OBJECTS.c.object_id == object_id))
            ).rowcount
            conn.execute(RECORDS.delete().where((RECORDS.c.owner == owner) & (RECORDS.c.object_id == object_id)))
        return bool(gone)

    def usage(self, owner: str) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(OBJECTS.c.size), 0)).where(OBJECTS.c.owner == owner)
                ).scalar_one()
            )

    def count(self, owner: str) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(OBJECTS).where(OBJECTS.c.owner == owner)
                ).scalar_one()
            )

    def wrapped_not_under(self, kek_id: str, limit: int) -> Sequence[StoredObject]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(OBJECTS)
                .where(OBJECTS.c.kek_id != kek_id)
                .order_by(OBJECTS.c.owner, OBJECTS.c.object_id)
                .limit(limit)
            )
            return [_obj(r) for r in rows]

    def rewrap(self, obj: StoredObject, kek_id: str, wrapped_key: bytes) -> bool:
        with self._engine.begin() as conn:
            changed = conn.execute(
                OBJECTS.update()
                .where(
                    (OBJECTS.c.owner == obj.owner)
                    & (OBJECTS.c.object_id == obj.object_id)
                    & (OBJECTS.c.version == obj.version)
                    & (OBJECTS.c.kek_id == obj.kek_id)
                )
                .values(kek_id=kek_id, wrapped_key=wrapped_key)
            ).rowcount
        return bool(changed)

    def count_wraps(self, kek_id: str, n: int) -> int:
        with self._engine.begin() as conn:
            updated = conn.execute(
                KEY_WRAPS.update().where(KEY_WRAPS.c.kek_id == kek_id).values(wraps=KEY_WRAPS.c.wraps + n)
            ).rowcount
            if not updated:
                conn.execute(KEY_WRAPS.insert().values(kek_id=kek_id, wraps=n))
            return int(conn.execute(sa.select(KEY_WRAPS.c.wraps).where(KEY_WRAPS.c.kek_id == kek_id)).scalar_one())

    def close(self) -> None:
        return None
