#!/usr/bin/env bash
# Runs the platform: the core plus every bundled plugin, with embedded defaults
# (data in ./.vivified). Usage: bash tools/up.sh [vivified up flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh
exec vivified up "$@"
