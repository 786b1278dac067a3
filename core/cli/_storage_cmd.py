"""`vivified storage rewrap`: move the object store's data keys onto the newest key.

Rotation: put a new key first in the secrets key file (or
`VIVIFIED_SECRETS_KEY`) and restart the core, so new objects are wrapped
under it at once; then run this, beside the running core, to re-wrap the data
keys of older objects. It is safe to stop or kill and run again; objects stay
readable throughout. Remove the old key only after it reports nothing left.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Mapping

from vivified.core.cli._client import data_dir
from vivified.core.cli._settings import check_environment
from vivified.core.db import plain_engine, sqlite_url
from vivified.core.plugin_config import SecretsKeyring
from vivified.core.storage import DatabaseBackend, DirectoryBackend, ObjectBackend, RewrapReport, rewrap_all


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    storage = sub.add_parser("storage", help="maintain the object store (key rotation)")
    verbs = storage.add_subparsers(dest="verb", required=True)
    rewrap = verbs.add_parser(
        "rewrap",
        help="re-wrap every object's data key under the first (newest) secrets key",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rewrap.add_argument("--data-dir", help="core data dir (default ./.vivified)")
    rewrap.add_argument(
        "--storage-backend",
        choices=["directory", "database"],
        default=None,
        help="where the objects are (default: $VIVIFIED_STORAGE_BACKEND, else directory)",
    )
    rewrap.add_argument(
        "--database-url",
        help="the core's database, for the database backend "
        "(default: $VIVIFIED_DATABASE_URL, else SQLite in the data dir)",
    )
    rewrap.add_argument(
        "--secrets-key-file",
        type=pathlib.Path,
        metavar="FILE",
        help="the core's secrets keys (default <data-dir>/config/secrets.key; $VIVIFIED_SECRETS_KEY wins over it)",
    )
    rewrap.add_argument("--batch", type=int, default=100, metavar="N", help="objects per batch (default 100)")
    rewrap.add_argument("--json", action="store_true", help="print the result as JSON")


def _backend(args: argparse.Namespace, environ: Mapping[str, str], directory: pathlib.Path) -> ObjectBackend:
    kind = args.storage_backend or environ.get("VIVIFIED_STORAGE_BACKEND", "directory")
    if kind == "database":
        url = args.database_url or environ.get("VIVIFIED_DATABASE_URL") or sqlite_url(directory / "vivified.db")
        return DatabaseBackend(plain_engine(url))
    if kind != "directory":
        raise SystemExit(f"error: VIVIFIED_STORAGE_BACKEND must be directory or database, not {kind!r}")
    return DirectoryBackend(directory / "objects")


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    check_environment(environ)
    if args.batch < 1:
        raise SystemExit("error: --batch must be at least 1")
    directory = data_dir(args, environ)
    keyring = SecretsKeyring.load(
        environ_value=environ.get("VIVIFIED_SECRETS_KEY"), key_file=args.secrets_key_file, data_dir=directory
    )
    backend = _backend(args, environ, directory)

    def progress(report: RewrapReport) -> None:
        print(f"rewrapped {report.rewrapped} object(s) so far", file=sys.stderr, flush=True)

    try:
        report = rewrap_all(backend, keyring, batch=args.batch, progress=progress)
    finally:
        backend.close()
    if args.json:
        out.append(
            json.dumps({"primary_key": keyring.primary_id, "rewrapped": report.rewrapped, "skipped": report.skipped})
        )
    else:
        out.append(
            f"{report.rewrapped} object(s) re-wrapped under key {keyring.primary_id}; "
            f"{report.skipped} changed meanwhile and left as written"
        )
    return 0
