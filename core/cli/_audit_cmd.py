"""`vivified audit verify|tail`: read the audit log straight from the database,
so verification does not have to trust a running core. `vivified audit query`
asks a running core instead (AuditQueryService), as the local operator or,
with `VIVIFIED_API_KEY`, as a user holding `audit_viewer`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping

import grpc
import sqlalchemy as sa
from google.protobuf import json_format

from vivified.admin.v1 import audit_query_pb2 as pb
from vivified.admin.v1 import audit_query_pb2_grpc
from vivified.core.audit import tail, verify
from vivified.core.cli._client import ClientError, core_target, data_dir, describe, open_channel
from vivified.core.db import plain_engine, sqlite_url, unavailable
from vivified.core.settings import AUDIT_WRITERS


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify or read the tamper-evident audit log")
    audit.add_argument("--data-dir", help="core data dir (default ./.vivified)")
    audit.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    verbs = audit.add_subparsers(dest="verb", required=True)
    verify_cmd = verbs.add_parser(
        "verify",
        help="check the hash chain and signed checkpoints; exit 1 on any tampering",
        description="Check every record's hash and link and every signed checkpoint. Records after the final "
        "checkpoint of a clean stop are tampering, unless several replicas share the chain (--audit-writers shared). "
        "Names the first record that is wrong.",
    )
    verify_cmd.add_argument(
        "--audit-writers",
        choices=list(AUDIT_WRITERS),
        help="as the core was run (default: $VIVIFIED_AUDIT_WRITERS, else single)",
    )
    verify_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    tail_cmd = verbs.add_parser("tail", help="show the most recent records")
    tail_cmd.add_argument("-n", type=int, default=20, help="how many records (default 20)")
    tail_cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    query = verbs.add_parser(
        "query",
        help="list records through a running core (operator certificate, or VIVIFIED_API_KEY of an audit_viewer)",
    )
    query.add_argument("--core", metavar="HOST:PORT", help="core address (default: from the data dir)")
    query.add_argument("--actor", default="", help="e.g. plugin:relay or user:usr_…")
    query.add_argument("--action", default="", help="a full gRPC method or a verb such as core.start")
    query.add_argument("--decision", choices=["allow", "deny"], default="")
    query.add_argument(
        "--trace",
        default="",
        metavar="TRACE_ID",
        help="only one trace's records (32 hex digits), e.g. every step of an onboarding from `users create`",
    )
    query.add_argument("--since", type=dt.datetime.fromisoformat, metavar="ISO_TIME", help="records at or after")
    query.add_argument("--limit", type=int, default=50, help="newest N records (default 50, max 1000)")
    query.add_argument("--json", action="store_true", help="print JSON")


async def _query(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    request = pb.ListAuditRecordsRequest(
        actor=args.actor, action=args.action, decision=args.decision, page_size=args.limit, trace_id=args.trace
    )
    if args.since is not None:
        since = args.since if args.since.tzinfo else args.since.replace(tzinfo=dt.UTC)
        request.start_time.FromDatetime(since.astimezone(dt.UTC))
    async with open_channel(core_target(data_dir(args, environ), environ, args.core)) as channel:
        try:
            reply = await audit_query_pb2_grpc.AuditQueryServiceStub(channel).ListAuditRecords(request, timeout=30)
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    if args.json:
        out.append(json_format.MessageToJson(reply, preserving_proto_field_name=True))
        return 0
    for r in reply.records:
        when = r.record_time.ToDatetime(tzinfo=dt.UTC).isoformat()
        out.append(f"{r.seq:>8} {when} {r.actor:28} {r.decision:5} {r.outcome:18} {r.action} {r.reason}")
    return 0


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    if args.verb == "query":
        if not 1 <= args.limit <= 1000:
            raise ClientError("--limit must be between 1 and 1000")
        return asyncio.run(_query(args, environ, out))
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
            writers = args.audit_writers or environ.get("VIVIFIED_AUDIT_WRITERS") or "single"
            if writers not in AUDIT_WRITERS:
                raise ClientError(f"VIVIFIED_AUDIT_WRITERS must be single or shared, not {writers!r}")
            result = verify(
                engine,
                audit_dir / "checkpoints.jsonl",
                audit_dir / "checkpoint.key.pub",
                shared_chain=writers == "shared",
            )
            if args.json:
                out.append(json.dumps(dataclasses.asdict(result)))
                return 0 if result.ok else 1
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
