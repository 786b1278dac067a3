"""A real PostgreSQL 15 server for tests: started once, on loopback, stopped by pid.

initdb refuses to run as root, so as root the cluster belongs to the
`postgres` system user (`runuser`); as anyone else it runs as that user. The
superuser is `vivified` (trust on loopback); `vivified_app` is an ordinary
login role that must give its password (scram-sha-256), the shape a
production core runs with. Each test gets its own database.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg

BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "vivified"
APP_ROLE = "vivified_app"

_HBA = f"""\
local all all trust
host all {APP_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PostgresServer:
    """A running cluster and the role the core would log in as."""

    directory: pathlib.Path
    port: int
    pid: int
    app_password: str
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres", *, app_role: bool = False) -> str:
        """SQLAlchemy URL as the superuser, or as the password-authenticated app role."""
        who = f"{APP_ROLE}:{self.app_password}" if app_role else SUPERUSER
        return f"postgresql+psycopg://{who}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True)

    def create_database(self) -> str:
        """A fresh, empty database; returns its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (fast shutdown) to the postmaster by pid; wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.05)
        if _alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    # The postmaster is not our child (pg_ctl daemonises it): a zombie left
    # for init to reap counts as stopped.
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start_postgres() -> PostgresServer:
    """initdb a new cluster in a temporary directory and start it on a free port."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="vivified-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    data = directory / "data"
    try:
        subprocess.run(
            _as_owner(
                [
                    str(BIN / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    SUPERUSER,
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        (data / "pg_hba.conf").write_text(_HBA)
        for _attempt in range(3):
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off"
            started = subprocess.run(
                _as_owner(
                    [
                        str(BIN / "pg_ctl"),
                        "-D",
                        str(data),
                        "-w",
                        "-t",
                        "30",
                        "-l",
                        str(directory / "log"),
                        "-o",
                        options,
                        "start",
                    ]
                ),
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if started.returncode == 0:
                break
        else:
            log = (directory / "log").read_text(errors="replace") if (directory / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log}")
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        server = PostgresServer(directory=directory, port=port, pid=pid, app_password=secrets.token_urlsafe(18))
        with server._admin() as conn:
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{server.app_password}'")
        return server
    except BaseException:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            PostgresServer(directory, 0, int(pid_file.read_text().splitlines()[0]), "").stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise


@contextlib.contextmanager
def postgres_running() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
