"""`vivified up` and `vivified core`: the platform, or the core broker alone."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping

from vivified.core.cli._settings import add_core_flags, core_config
from vivified.core.cli._up import add_plugin_flag, add_sandbox_flag, external_plugins, run_core, run_up
from vivified.core.memory import return_large_frees_to_os


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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
