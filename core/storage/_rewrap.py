"""Re-wrapping data keys under the keyring's primary key (`vivified storage rewrap`).

After a new key is added in front of the secrets keyring, new objects use it
at once; this moves the data keys of older objects onto it, batch by batch.
Each object is a compare-and-set on its (version, old key id), so the job can
be killed at any point and run again: an object is re-wrapped once, from the
plaintext data key (never wrapped twice over), and one written or re-wrapped
meanwhile is left alone. Objects stay readable throughout, since every key
of the keyring still unwraps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vivified.core.plugin_config import SecretsKeyring
from vivified.core.storage._backend import ObjectBackend
from vivified.core.storage._envelope import ObjectRef, unwrap, wrap


@dataclass
class RewrapReport:
    rewrapped: int = 0
    skipped: int = 0
    """Changed by someone else between reading and re-wrapping."""


def rewrap_all(
    backend: ObjectBackend,
    keyring: SecretsKeyring,
    *,
    batch: int = 100,
    progress: Callable[[RewrapReport], None] = lambda _report: None,
) -> RewrapReport:
    report = RewrapReport()
    primary = keyring.primary_id
    skipped_ids: set[tuple[str, str, int]] = set()
    while True:
        found = [
            o
            for o in backend.wrapped_not_under(primary, batch + len(skipped_ids))
            if (o.owner, o.object_id, o.version) not in skipped_ids
        ][:batch]
        if not found:
            return report
        for obj in found:
            ref = ObjectRef(obj.owner, obj.object_id, obj.version)
            data_key = unwrap(keyring, ref, obj.kek_id, obj.wrapped_key)
            backend.count_wraps(primary, 1)
            kek_id, wrapped = wrap(keyring, ref, data_key)
            if backend.rewrap(obj, kek_id, wrapped):
                report.rewrapped += 1
            else:
                report.skipped += 1
                skipped_ids.add((obj.owner, obj.object_id, obj.version))
        progress(report)
