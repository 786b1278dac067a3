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
import importlib.metadata
import logging
import os
import sys
from collections.abc import Callable, Sequence

from vivified.core.cli import (
    _audit_cmd,
    _bench,
    _ca_cmd,
    _config_cmd,
    _core_settings_cmd,
    _create_plugin,
    _db_cmd,
    _events_cmd,
    _health_cmd,
    _manifest_cmd,
    _operators_cmd,
    _plugin_config_cmd,
    _plugins_cmd,
    _policy_cmd,
    _proto_path_cmd,
    _rest_cmd,
    _run_plugin_cmd,
    _storage_cmd,
    _users_cmd,
)
from vivified.core.cli._client import ClientError
from vivified.core.cli._options import spread_options
from vivified.core.cli._settings import SettingsError, add_core_flags, core_config
from vivified.core.cli._up import add_plugin_flag, add_sandbox_flag, external_plugins, run_core, run_up
from vivified.core.db import DatabaseError
from vivified.core.errors import VivifiedError
from vivified.core.memory import return_large_frees_to_os
from vivified.core.policy import PolicyError
from vivified.core.telemetry import LOG_FORMATS, configure_logging


def _add_run_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (
        (
            "up",
            "run the core and every bundled plugin (development profile); with Envoy installed, "
            "also the REST bridge on https://127.0.0.1:8443",
        ),
        (
            "core",
            "run the core broker alone. REST for scripts and browsers in production: generate "
            "Envoy's configuration with `vivified rest config` and run `envoy -c` "
            "(deploy/envoy/README.md)",
        ),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        add_core_flags(cmd)
        if name == "up":
            add_plugin_flag(cmd)
            add_sandbox_flag(cmd)


# Each adds one subcommand (and its verbs) to the `vivified` parser; a new subcommand is one entry.
_COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_run_commands,
    _plugins_cmd.add_parser,
    _operators_cmd.add_parser,
    _ca_cmd.add_parser,
    _manifest_cmd.add_parser,
    _audit_cmd.add_parser,
    _events_cmd.add_parser,
    _db_cmd.add_parser,
    _storage_cmd.add_parser,
    _users_cmd.add_parser,
    _config_cmd.add_parser,
    _policy_cmd.add_parser,
    _bench.add_parser,
    _create_plugin.add_parser,
    _rest_cmd.add_parser,
    _proto_path_cmd.add_parser,
    _health_cmd.add_parser,
    _run_plugin_cmd.add_parser,
)


def package_version() -> str:
    """The installed distribution's version (`vivified --version`)."""
    try:
        return importlib.metadata.version("vivified")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
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
    for add in _COMMANDS:
        add(sub)
    # Every option of a command group is accepted before or after its verbs.
    spread_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        # Everything after `bench` (its --help too) belongs to the benchmark's own parser.
        return _bench.run([*args.rest, *extra])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    environ = dict(os.environ)
    out: list[str] = []
    try:
        if args.command in ("up", "core"):
            config = core_config(args, environ)
            return_large_frees_to_os()
            if args.command == "up":
                return asyncio.run(
                    run_up(
                        config,
                        environ,
                        extra_plugins=external_plugins(args.plugin),
                        allow_unsandboxed=args.allow_unsandboxed,
                    )
                )
            return asyncio.run(run_core(config))
        if args.command == "plugins":
            code = asyncio.run(_plugins_cmd.run(args, environ, out))
        elif args.command == "operators":
            code = asyncio.run(_operators_cmd.run(args, environ, out))
        elif args.command == "ca":
            code = _ca_cmd.run(args, environ, out)
        elif args.command == "manifest":
            code = _manifest_cmd.run(args, out)
        elif args.command == "events":
            code = asyncio.run(_events_cmd.run(args, environ, out))
        elif args.command == "audit":
            code = _audit_cmd.run(args, environ, out)
        elif args.command == "storage":
            code = _storage_cmd.run(args, environ, out)
        elif args.command == "db":
            code = _db_cmd.run(args, environ, lambda line: print(line, flush=True))
        elif args.command == "config" and args.verb == "core":
            code = asyncio.run(_core_settings_cmd.run(args, environ, out))
        elif args.command == "config" and args.verb == "plugin":
            code = asyncio.run(_plugin_config_cmd.run(args, environ, out))
        elif args.command == "config":
            code = _config_cmd.show(args, environ, out)
        elif args.command == "create-plugin":
            code = _create_plugin.run(args, out)
        elif args.command == "policy":
            code = _policy_cmd.run(args, environ, out)
        elif args.command == "rest":
            code = _rest_cmd.run(args, environ, out)
        elif args.command == "proto-path":
            code = _proto_path_cmd.run(args, out)
        elif args.command == "health":
            code = _health_cmd.run(args, environ, out)
        elif args.command == "run-plugin":
            code = _run_plugin_cmd.run(args, environ)
        else:
            code = _users_cmd.run(args, environ, out)
    except (SettingsError, ClientError, VivifiedError, PolicyError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for line in out:
            print(line)
    return code
