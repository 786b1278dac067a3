"""The plugins under test: every plugin under `plugins/` that ships a manifest
and can run standalone, as a command plus that manifest (nothing else is
known about it: the suite is language-neutral).

A Python plugin has `__main__.py` (run as `python -m vivified.plugins.<name>`),
a Node.js plugin a `package.json` whose `main` it runs with `node`. The probe
is one operation the plugin `provides` and the answer it gives to a request
for an unknown id: a call the plugin itself answers, whatever its state."""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import dataclass

from vivified.core.manifest import load_manifest_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"


@dataclass(frozen=True)
class PluginUnderTest:
    name: str
    command: tuple[str, ...]
    manifest: pathlib.Path

    @property
    def plugin_id(self) -> str:
        return load_manifest_file(self.manifest).id

    @property
    def probe(self) -> str:
        """The operation the suite calls (with an empty request): a provided
        `Get...Status` read if there is one, else the first provided operation."""
        provides = list(load_manifest_file(self.manifest).provides)
        assert provides, f"{self.name} provides no operation the suite could call"
        reads = [m for m in provides if m.rpartition("/")[2].startswith("Get") and m.endswith("Status")]
        return (reads or provides)[0]


def discover() -> list[PluginUnderTest]:
    found = []
    for entry in sorted(PLUGINS.iterdir()):
        manifest = entry / "manifest.yaml"
        if not manifest.is_file():
            continue
        if (entry / "__main__.py").is_file():
            found.append(PluginUnderTest(entry.name, (sys.executable, "-m", f"vivified.plugins.{entry.name}"), manifest))
        elif (entry / "package.json").is_file():
            main = json.loads((entry / "package.json").read_text()).get("main", "index.js")
            found.append(PluginUnderTest(entry.name, ("node", str(entry / main)), manifest))
    return found
