"""The Unix sockets between the core and sandboxed plugins.

A sandboxed plugin has no usable network (its own network namespace), so the
core also serves its two ports as Unix sockets in `plugin_socket_dir`, and the
plugin serves its own gRPC server on a socket in a directory of its own:

    <dir>/core.sock              the mTLS port (plugins call the lanes here)
    <dir>/bootstrap.sock         the bootstrap port (registration)
    <dir>/<plugin-id>/plugin.sock  the plugin's server, which the core dials

The socket is transport, not trust: mTLS runs over it exactly as over TCP.
The registry accepts a Unix endpoint from a plugin only when it is that
plugin's own `plugin.sock` path, so a plugin cannot point the core at any
other socket on the host.
"""

from __future__ import annotations

import pathlib

from vivified.core.errors import FailedPrecondition

CORE_SOCKET = "core.sock"
BOOTSTRAP_SOCKET = "bootstrap.sock"
PLUGIN_SOCKET = "plugin.sock"
MAX_SOCKET_PATH = 107
"""The longest socket path Linux takes (`sun_path` holds 108 bytes with its NUL)."""
UNIX = "unix:"


def unix_target(path: pathlib.Path) -> str:
    """The gRPC address of a socket path (`unix:/abs/path`)."""
    return f"{UNIX}{path}"


def core_socket(directory: pathlib.Path) -> pathlib.Path:
    return directory / CORE_SOCKET


def bootstrap_socket(directory: pathlib.Path) -> pathlib.Path:
    return directory / BOOTSTRAP_SOCKET


def plugin_socket_dir(directory: pathlib.Path, plugin_id: str) -> pathlib.Path:
    """The one directory a sandboxed plugin may write sockets in."""
    return directory / plugin_id


def plugin_socket(directory: pathlib.Path, plugin_id: str) -> pathlib.Path:
    return plugin_socket_dir(directory, plugin_id) / PLUGIN_SOCKET


def check_socket_path(path: pathlib.Path) -> pathlib.Path:
    """`path`, or FailedPrecondition SOCKET_PATH_TOO_LONG when Linux cannot bind it."""
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise FailedPrecondition(
            f"the Unix socket path {path} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --plugin-socket-dir",
            reason="SOCKET_PATH_TOO_LONG",
        )
    return path


def prepare_socket_dir(directory: pathlib.Path) -> None:
    """Create the directory (mode 0700) and remove sockets a previous core left."""
    directory = directory.resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for name in (CORE_SOCKET, BOOTSTRAP_SOCKET):
        path = check_socket_path(directory / name)
        if path.is_socket():
            path.unlink()
