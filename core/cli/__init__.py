"""The `vivified` command line.

    vivified up [--plugin DIR]...    core + bundled plugins (development profile) + plugin projects
    vivified create-plugin NAME --contract C [--dir DIR]   a new plugin project
    vivified core                    the core broker alone
    vivified plugins approve|list|enable|disable|revoke
    vivified operators list|revoke SERIAL
    vivified ca rotate|status
    vivified manifest validate FILE [--json]
    vivified audit verify|tail|query
    vivified events subscriptions [delete SUB --reason R] | dlq list|replay
    vivified db upgrade [--app-role ROLE]
    vivified users create-admin --username U [--password-file F] | create --username U --role R | list | roles
    vivified config show [--config FILE] [core flags]
    vivified config plugin get|set|history PLUGIN [KEY VALUE] --reason R
    vivified config core list|set KEY VALUE|unset KEY|history --reason R
    vivified policy rules [--report-only] [--json] [core flags]
    vivified bench chain|invoke|events|egress
    vivified rest config [--listen HOST:PORT] [--out DIR]   the REST bridge's Envoy configuration
    vivified proto-path [--json]     where the installed .proto files are (grpcurl -import-path)
    vivified health [--address A] [--ca-file F]   grpc.health.v1 check over TLS (container probes)
    vivified --version

The options of a command group (`--data-dir`, `--core`, `--json`, `-v`, ...)
are accepted before or after its verbs: `vivified audit verify --data-dir X`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from vivified.core.cli._options import spread_options
from vivified.core.telemetry import LOG_FORMATS, configure_logging

# Each command's module, which adds its parser (`add_parser(sub)`) and runs it; a new command is
# one entry here and one branch in `_run`. Modules are imported only for the command given (all of
# them for `vivified --help`): importing every command's dependencies cost each call a second, and
# several on a loaded machine.
_COMMANDS: dict[str, str] = {
    "up": "_run_cmds",
    "core": "_run_cmds",
    "plugins": "_plugins_cmd",
    "operators": "_operators_cmd",
    "ca": "_ca_cmd",
    "manifest": "_manifest_cmd",
    "audit": "_audit_cmd",
    "events": "_events_cmd",
    "db": "_db_cmd",
    "storage": "_storage_cmd",
    "users": "_users_cmd",
    "config": "_config_cmd",
    "policy": "_policy_cmd",
    "bench": "_bench",
    "create-plugin": "_create_plugin",
    "rest": "_rest_cmd",
    "proto-path": "_proto_path_cmd",
    "health": "_health_cmd",
    "run-plugin": "_run_plugin_cmd",
}

# The errors a command reports as `error: <message>` (exit 1), by the module defining each. A module
# the command did not import cannot have raised its error, so only imported ones are looked up.
_REPORTED = (
    ("vivified.core.errors", "VivifiedError"),
    ("vivified.core.settings._table", "SettingsError"),
    ("vivified.core.cli._client", "ClientError"),
    ("vivified.core.policy._rules", "PolicyError"),
    ("vivified.core.db._errors", "DatabaseError"),
)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"vivified.core.cli.{name}")


def _reported(exc: BaseException) -> bool:
    return any(isinstance(exc, getattr(sys.modules[m], n)) for m, n in _REPORTED if m in sys.modules)


def package_version() -> str:
    """The installed distribution's version (`vivified --version`)."""
    try:
        return importlib.metadata.version("vivified")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `vivified` parser: with `command`, only that command's subparser (its module alone
    imported); otherwise every command's."""
    parser = argparse.ArgumentParser(
        prog="vivified",
        description="Vivified: a secure plugin platform. The core brokers every plugin interaction over "
        "gRPC with mutual TLS, default-deny policy and a tamper-evident audit log.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"vivified {package_version()}")
    log_help = (
        "log lines as text for people (default) or as one JSON object per line (time, level, logger, "
        "message, plugin_id, trace_id, span_id)"
    )
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text", help=log_help)
    sub = parser.add_subparsers(dest="command", required=True)
    names = [command] if command in _COMMANDS else list(_COMMANDS)
    for module in dict.fromkeys(_COMMANDS[name] for name in names):
        _module(module).add_parser(sub)
    # Every option of a command group is accepted before or after its verbs.
    spread_options(parser)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The command `argv` names, or None when the whole parser is needed (no command yet,
    `--help` or `--version` before it, or a word that is not a command)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--version"):
            return None
        if word == "--log-format":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_word(argv))
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        # Everything after `bench` (its --help too) belongs to the benchmark's own parser.
        return int(_module("_bench").run([*args.rest, *extra]))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    environ = dict(os.environ)
    out: list[str] = []
    try:
        return _run(args, environ, out)
    except Exception as exc:
        if not _reported(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for line in out:
            print(line)


def _run(args: argparse.Namespace, environ: dict[str, str], out: list[str]) -> int:
    command = args.command
    if command in ("up", "core"):
        return int(_module("_run_cmds").run(args, environ))
    if command == "config" and args.verb in ("core", "plugin"):
        module = _module("_core_settings_cmd" if args.verb == "core" else "_plugin_config_cmd")
        return int(asyncio.run(module.run(args, environ, out)))
    module = _module(_COMMANDS[command])
    if command in ("plugins", "operators", "events"):
        return int(asyncio.run(module.run(args, environ, out)))
    if command in ("manifest", "create-plugin", "proto-path"):
        return int(module.run(args, out))
    if command == "db":
        return int(module.run(args, environ, lambda line: print(line, flush=True)))
    if command == "config":
        return int(module.show(args, environ, out))
    if command == "run-plugin":
        return int(module.run(args, environ))
    return int(module.run(args, environ, out))
