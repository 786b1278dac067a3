#!/usr/bin/env bash
# Rewrite pyproject.toml's package list from the tree, then refresh the editable install.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import pathlib, re, subprocess, sys
listing = subprocess.run([sys.executable, "tools/packages.py"], capture_output=True, text=True, check=True).stdout
path = pathlib.Path("pyproject.toml")
text = path.read_text()
path.write_text(re.sub(r"packages = \[\n.*?\n\]", "packages = [\n" + listing.rstrip("\n") + "\n]", text, count=1, flags=re.S))
PY
.venv/bin/python -m pip install -q --disable-pip-version-check -e . --no-deps
