"""The core's object store for plugins (`vivified.storage.v1.ObjectStoreService`).

- `ObjectStore` applies the rules (ownership, sharing declared in both
  manifests, classification traits, size limit and quota) over a backend and
  encrypts every object version under a fresh data key (`_envelope`).
- Backends: `DirectoryBackend` (the data dir, atomic file writes; default) and
  `DatabaseBackend` (chunk rows in the core's database, for replicas).
- `rewrap_all` moves old data keys onto the keyring's new primary key.
"""

from vivified.core.storage._backend import ObjectBackend, StoredObject
from vivified.core.storage._database import DatabaseBackend
from vivified.core.storage._directory import DirectoryBackend
from vivified.core.storage._envelope import RECORD_BYTES, WRAP_LIMIT
from vivified.core.storage._names import check_name, object_id
from vivified.core.storage._rewrap import RewrapReport, rewrap_all
from vivified.core.storage._service import ObjectStoreService
from vivified.core.storage._store import Actor, ObjectStore, PutHeader, StorageLimits
from vivified.core.storage._wiring import build_object_store, open_backend

__all__ = [
    "RECORD_BYTES",
    "WRAP_LIMIT",
    "Actor",
    "DatabaseBackend",
    "DirectoryBackend",
    "ObjectBackend",
    "ObjectStore",
    "ObjectStoreService",
    "PutHeader",
    "RewrapReport",
    "StorageLimits",
    "StoredObject",
    "build_object_store",
    "check_name",
    "object_id",
    "open_backend",
    "rewrap_all",
]
