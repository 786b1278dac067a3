"""`python -m vivified.plugins.user_management`: run the people directory
against the core named by the `VIVIFIED_*` environment (see
`PluginSettings.from_env`; `VIVIFIED_DATA_DIR` is required: the profiles
live there).

Exits 0 after a graceful stop and 1 when the plugin cannot start or fails."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from vivified.plugins.user_management._plugin import serve_until_stopped
from vivified.sdk import PluginSettings, VivifiedSDKError


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_until_stopped(PluginSettings.from_env(os.environ)))
    except VivifiedSDKError as error:
        logging.getLogger("vivified.plugins.user_management").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
