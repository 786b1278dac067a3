#!/usr/bin/env bash
# The full test suite on a fresh machine: installs what it needs, checks the
# contracts and generated code, type-checks core/ and sdk/, then runs every
# test. Usage: bash tools/test.sh [pytest args] (with args, one plain pytest run of those)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh

echo "== contracts: buf lint, format, generated code, breaking changes"
node_modules/.bin/buf lint
# proto/google and proto/grpc are third-party protos kept byte-for-byte as shipped.
node_modules/.bin/buf format --diff --exit-code --exclude-path proto/google --exclude-path proto/grpc
node_modules/.bin/buf generate
# The TypeScript types of the contracts for the Node.js SDK (gen/ts, protoc-gen-es).
node_modules/.bin/buf generate --template buf.gen.ts.yaml
if ! git diff --quiet -- gen || [ -n "$(git ls-files --others --exclude-standard gen)" ]; then
  echo "gen/ is stale: run 'node_modules/.bin/buf generate' (and --template buf.gen.ts.yaml for gen/ts) and commit the result" >&2
  git status --short gen >&2
  exit 1
fi
if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto 2>/dev/null; then
  node_modules/.bin/buf breaking --against ".git#ref=HEAD~1"
else
  echo "buf breaking: no earlier commit with proto/ to compare against"
fi

echo "== types: mypy --strict on core/ and sdk/ (tools/typecheck.py)"
python tools/typecheck.py

echo "== lint: ruff check and ruff format --check (everything but generated code)"
ruff check --no-cache .
ruff format --check --no-cache .

echo "== Node.js: sdk/nodejs and the Node plugins' unit tests (node --test)"
(cd sdk/nodejs && node --test dist/test/)
for lock in plugins/*/package-lock.json; do
  [ -f "$lock" ] && (cd "$(dirname "$lock")" && node --test test/)
done

echo "== admin console: vitest unit tests (core/ui; built by tools/setup.sh)"
(cd core/ui && npm test --silent)

echo "== tests"
if [ $# -gt 0 ]; then
  python -m pytest "$@"
  exit
fi
# Most tests wait on the real processes they start, so two workers halve the wall time; a
# module's tests stay on one worker (its module-scoped core is started once). Tests that
# assert wall-clock bounds or latency ratios are marked `serial` and run alone afterwards.
status=0
python -m pytest -n "${VIVIFIED_TEST_WORKERS:-2}" --dist loadfile -m "not serial" || status=$?
python -m pytest -m serial || status=$?
exit "$status"
