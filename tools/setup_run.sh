#!/usr/bin/env bash
# Installs only what running Vivified needs, without root: ./.venv with the package
# (no dev extras) and, when node and npm are on PATH, the Node.js plugins' packages and
# the sdk/nodejs build they import. Sourced by tools/up.sh and by tools/setup.sh.
# Without node the Node.js plugins are skipped: `vivified up` logs that and runs the rest.
# Every npm step is `npm ci` from a committed lock file, so setup leaves the tree as it was.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
  PY=""
  # 3.11 first: the version the whole suite and the type check run on in CI.
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null; then
      PY=$candidate
      break
    fi
  done
  if [ -z "$PY" ]; then
    echo "Vivified needs Python 3.11, 3.12 or 3.13 (python3.1x on PATH); none found" >&2
    return 1 2>/dev/null || exit 1
  fi
  "$PY" -m venv .venv
fi
# SETUP_PIP_EXTRAS is for tools/setup.sh (the test command's setup), which adds [dev]; not VIVIFIED_*,
# which the core would refuse as an unknown setting if it leaked into its environment.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${SETUP_PIP_EXTRAS:-}"

if command -v node >/dev/null && command -v npm >/dev/null; then
  # The Node.js SDK is TypeScript, compiled into sdk/nodejs/dist (rebuilt when a source is newer).
  if [ ! -d sdk/nodejs/node_modules ] || [ sdk/nodejs/package-lock.json -nt sdk/nodejs/node_modules ]; then
    (cd sdk/nodejs && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # The registry metadata of the SDK's compiler and Node types, so `create-plugin --lang node`
  # projects install with `npm install --offline` (tools/sdk_dev_packages.mjs says why).
  npm cache add --loglevel=error $(node tools/sdk_dev_packages.mjs)
  if [ ! -f sdk/nodejs/dist/src/index.js ] || [ -n "$(find sdk/nodejs/src sdk/nodejs/test sdk/nodejs/tsconfig.json -newer sdk/nodejs/dist/src/index.js -print -quit)" ]; then
    (cd sdk/nodejs && npm run --silent build)
  fi
  for lock in plugins/*/package-lock.json; do
    [ -f "$lock" ] || continue
    dir=$(dirname "$lock")
    if [ ! -d "$dir/node_modules" ] || [ "$lock" -nt "$dir/node_modules" ]; then
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
else
  echo "node/npm not found: the Node.js plugins (plugins/webhook_notifier) will not be started; everything else runs" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
