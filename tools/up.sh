#!/usr/bin/env bash
# Runs the platform: the core plus every bundled plugin, with embedded defaults
# (data in ./.vivified). Installs only what running needs (tools/setup_run.sh: no
# root, no apt, no buf or dev tools; Node.js plugins only when node is on PATH).
# Usage: bash tools/up.sh [vivified up flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_run.sh
exec vivified up "$@"
