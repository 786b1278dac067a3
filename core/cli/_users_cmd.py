"""`vivified users create-admin`: create the first administrator on the data dir
(`vivified users create|list|roles|reset-mfa` ask a running core: `_users_remote`).

It works on the database directly (the core may be stopped), so the first
admin can exist before anyone can sign in. There is no default password: it
comes from a file (`--password-file`, mode 0600 recommended) or is asked for
twice without echo. The creation is written to the audit log; the password
never is."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
from collections.abc import Mapping

from vivified.core.audit import AuditLog, AuditRecord, CheckpointSigner
from vivified.core.cli._client import data_dir
from vivified.core.cli._users_remote import REMOTE_VERBS, add_verbs, read_password
from vivified.core.cli._users_remote import run as run_remote
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.identity import IdentityConfig, user_admin
from vivified.core.traits import TraitCatalogue


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="manage the people who sign in to the core")
    users.add_argument("--data-dir", help="core data dir (default ./.vivified)")
    users.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    verbs = users.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create-admin", help="create a user with the admin role (MFA enrolment at first login)")
    create.add_argument("--username", required=True)
    create.add_argument(
        "--password-file", type=pathlib.Path, metavar="FILE", help="read the password from FILE (else prompt twice)"
    )
    add_verbs(verbs)


async def _audit(directory: pathlib.Path, engine: object, user_id: str, username: str, shared: bool) -> None:
    audit_dir = directory / "audit"
    audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # A core may be running on the same chain: not the only writer.
    log = AuditLog(
        engine,  # type: ignore[arg-type]
        clock=SystemClock(),
        signer=CheckpointSigner.load_or_create(audit_dir / "checkpoint.key"),
        checkpoint_path=audit_dir / "checkpoints.jsonl",
        shared_chain=shared,
        exclusive=False,
    )
    await log.start()
    try:
        await log.append(
            AuditRecord(
                actor="cli:local",
                action="users.create-admin",
                resource=f"user/{user_id}",
                decision="allow",
                outcome="OK",
                detail={"username": username, "roles": "admin"},
            )
        )
    finally:
        await log.close()


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    if args.verb in REMOTE_VERBS:
        return asyncio.run(run_remote(args, environ, out))
    directory = data_dir(args, environ)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = args.database_url or environ.get("VIVIFIED_DATABASE_URL") or sqlite_url(directory / "vivified.db")
    password = read_password(args.password_file)
    engine = create_engine_for(url)
    try:
        admin = user_admin(engine, SystemClock(), IdentityConfig(), TraitCatalogue.load_default())
        username, roles = admin.validate(args.username, password, ["admin"])
        user = admin.store.create_now(username, admin.hasher.hash_now(password), roles)
        shared = environ.get("VIVIFIED_AUDIT_WRITERS") == "shared"
        asyncio.run(_audit(directory, engine, user.user_id, username, shared))
    finally:
        engine.dispose()
    out.append(f"created admin {username!r} ({user.user_id}); MFA enrolment is required at first login")
    return 0
