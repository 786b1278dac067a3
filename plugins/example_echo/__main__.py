"""`python -m vivified.plugins.example_echo`: run the echo plugin against the
core named by the `VIVIFIED_*` environment (see `PluginSettings.from_env`).

Exits 0 after a graceful stop (SIGTERM, SIGINT, or the core's Shutdown) and 1
when the plugin cannot start or fails, so a supervisor knows to restart it."""

from __future__ import annotations

import logging
import os
import sys

from vivified.plugins.example_echo.plugin import EchoCommunicationPlugin
from vivified.sdk import PluginSettings, VivifiedSDKError, run


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run([EchoCommunicationPlugin()], PluginSettings.from_env(os.environ))
    except VivifiedSDKError as error:
        logging.getLogger("vivified.plugins.example_echo").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
