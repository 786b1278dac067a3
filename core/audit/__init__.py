"""Tamper-evident audit log: an append-only, hash-chained SQL table with
Ed25519-signed checkpoints kept outside the database.

- `AuditLog` appends records with group commit; `append` returns after commit,
  durable as `Durability` says (`group`: fsync within the sync interval;
  `fsync`: before the answer).
- `CheckpointSigner` holds the checkpoint key (0600) and exports `<key>.pub`.
- `verify` checks the chain and every checkpoint; `tail` reads the newest records.
- `check_tail` is the start-up check `AuditLog.start` runs: from the last
  checkpoint to the head, refusing (`AuditTailTampered`) records after a clean
  stop's final checkpoint or a broken link.
- `AuditQueryService` lists (filtered, paged), verifies and watches the log through a running core;
  `AuditFeed` fans newly committed records out to its watchers (bounded per watcher).
"""

from vivified.core.audit._checkpoint import Checkpoint, CheckpointSigner
from vivified.core.audit._durability import (
    DURABILITY_MODES,
    MAX_SYNC_INTERVAL,
    MIN_SYNC_INTERVAL,
    PROMISES,
    AuditSyncFailed,
    Durability,
)
from vivified.core.audit._feed import AuditFeed, WatchFilter
from vivified.core.audit._log import AuditLog
from vivified.core.audit._query import AuditFilter, query
from vivified.core.audit._query_service import AuditQueryService
from vivified.core.audit._record import GENESIS_HASH, AuditRecord, StoredRecord
from vivified.core.audit._table import audit_table
from vivified.core.audit._tail import ACCEPT_FLAG, AuditTailTampered, TailCheck, check_tail
from vivified.core.audit._verify import VerifyResult, tail, verify
from vivified.core.audit._wiring import Audit, build_audit

__all__ = [
    "Audit",
    "build_audit",
    "ACCEPT_FLAG",
    "DURABILITY_MODES",
    "MAX_SYNC_INTERVAL",
    "MIN_SYNC_INTERVAL",
    "PROMISES",
    "AuditSyncFailed",
    "Durability",
    "GENESIS_HASH",
    "AuditTailTampered",
    "TailCheck",
    "check_tail",
    "AuditFeed",
    "AuditFilter",
    "AuditLog",
    "AuditQueryService",
    "AuditRecord",
    "Checkpoint",
    "CheckpointSigner",
    "StoredRecord",
    "VerifyResult",
    "WatchFilter",
    "audit_table",
    "query",
    "tail",
    "verify",
]
