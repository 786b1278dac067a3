"""A storage plugin process for crash tests: `python -m support.lane_plugin_main`
with the SDK's VIVIFIED_* variables and LANE_DELAY (seconds per call)."""

from __future__ import annotations

import os

from support.lane import RecordingStore
from vivified.sdk import PluginSettings, run

if __name__ == "__main__":
    run([RecordingStore(delay=float(os.environ.get("LANE_DELAY", "0")))], PluginSettings.from_env(os.environ))
