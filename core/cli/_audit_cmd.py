"""`vivified audit verify|tail`: read the audit log straight from the database,
so verification does not have to trust a running core."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

import sqlalchemy as sa
from vivified.core.audit import tail, verify
from vivified.core.cli._settings import data_dir
from vivified.core.db import plain_engine, sqlite_url, unavailable


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="verify or read the tamper-evident audit log")
    audit.add_argument("--data-dir", help="core data dir (default ./.vivified)")
    audit.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    verbs = audit.add_subparsers(dest="verb", required=True)
    verbs.add_parser("verify", help="check the hash chain and signed checkpoints; exit 1 on any tampering")
    tail_cmd = verbs.add_parser("tail", help="show the most recent records")
    tail_cmd.add_argument("-n", type=int, default=20, help="how many records (default 20)")
    tail_cmd.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    directory = data_dir(args, environ)
    url = args.database_url or environ.get("VIVIFIED_DATABASE_URL") or sqlite_url(directory / "vivified.db")
    if url.startswith("sqlite") and not (directory / "vivified.db").exists() and not args.database_url:
        out.append(f"error: no audit database at {directory / 'vivified.db'}")
        return 1
    # Reading only: verification never migrates the database it checks.
    engine = plain_engine(url)
    try:
        if args.verb == "verify":
            audit_dir = directory / "audit"
            result = verify(engine, audit_dir / "checkpoints.jsonl", audit_dir / "checkpoint.key.pub")
            if result.ok:
                out.append(f"audit log OK: {result.count} records, chain and checkpoints verified")
                return 0
            out.append(f"audit log TAMPERED: first bad sequence {result.first_bad_seq}: {result.problem}")
            return 1
        for record in tail(engine, args.n):
            if args.json:
                out.append(json.dumps({**record.__dict__, "time": record.time.isoformat()}, default=str))
            else:
                out.append(
                    f"{record.seq:>8} {record.time.isoformat()} {record.actor:28} {record.decision:5} "
                    f"{record.outcome:18} {record.action} {record.reason}"
                )
        return 0
    except sa.exc.DBAPIError as exc:
        raise unavailable(exc, engine.url) from None
    finally:
        engine.dispose()
