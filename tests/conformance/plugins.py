"""The plugins under test: every plugin under `plugins/` that ships a manifest
and can run standalone, and the Python and Node.js plugins `vivified
create-plugin` generates, each as a command plus that manifest (nothing else
is known about it: the suite is language-neutral).

A Python plugin has `__main__.py` (run as `python -m vivified.plugins.<name>`),
a Node.js plugin a `package.json` whose `main` it runs with `node`. A
generated plugin is written (and, for Node, installed offline from the local
SDK path and built) once per test session, the first time a test needs it.
The probe is one operation the plugin `provides` and the answer it gives to a
request for an unknown id: a call the plugin itself answers, whatever its state."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from vivified.core.manifest import load_manifest_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
GENERATED = {"generated-python": "python", "generated-node": "node"}
"""The create-plugin projects under test (name -> --lang), each serving the communication contract."""


@dataclass(frozen=True)
class PluginUnderTest:
    name: str
    command: tuple[str, ...]
    manifest: pathlib.Path
    env: tuple[tuple[str, str], ...] = field(default=())
    """Extra environment of its process (a generated Python project's directory on PYTHONPATH)."""

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

    @property
    def subscribes(self) -> list[str]:
        return list(load_manifest_file(self.manifest).subscribes)


@dataclass(frozen=True)
class ToGenerate:
    """A create-plugin project, generated on first use (`generated`)."""

    name: str
    lang: str


def discover() -> list[PluginUnderTest | ToGenerate]:
    found: list[PluginUnderTest | ToGenerate] = []
    for entry in sorted(PLUGINS.iterdir()):
        manifest = entry / "manifest.yaml"
        if not manifest.is_file():
            continue
        if (entry / "__main__.py").is_file():
            found.append(
                PluginUnderTest(entry.name, (sys.executable, "-m", f"vivified.plugins.{entry.name}"), manifest)
            )
        elif (entry / "package.json").is_file():
            main = json.loads((entry / "package.json").read_text()).get("main", "index.js")
            found.append(PluginUnderTest(entry.name, ("node", str(entry / main)), manifest))
    found.extend(ToGenerate(name, lang) for name, lang in GENERATED.items())
    return found


_made: dict[str, PluginUnderTest] = {}


def generated(spec: ToGenerate, parent: pathlib.Path) -> PluginUnderTest:
    """Write the project with `vivified create-plugin` (once per session) and return it as a plugin under test."""
    if spec.name in _made:
        return _made[spec.name]
    run = lambda *argv: subprocess.run(argv, capture_output=True, text=True, timeout=300)  # noqa: E731
    created = run(
        sys.executable,
        "-m",
        "vivified.core.cli",
        "create-plugin",
        spec.name,
        "--contract",
        "communication",
        "--lang",
        spec.lang,
        "--dir",
        str(parent),
    )
    assert created.returncode == 0, created.stderr
    project = parent / spec.name
    if spec.lang == "node":
        assert shutil.which("npm"), "the Node.js plugin needs npm (tools/setup.sh)"
        for step in (
            ("npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error"),
            ("npm", "run", "--silent", "build"),
        ):
            done = subprocess.run(step, cwd=project, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
        main = json.loads((project / "package.json").read_text())["main"]
        made = PluginUnderTest(spec.name, ("node", str(project / main)), project / "manifest.yaml")
    else:
        made = PluginUnderTest(
            spec.name,
            (sys.executable, "-m", spec.name.replace("-", "_")),
            project / "manifest.yaml",
            env=(("PYTHONPATH", str(project)),),
        )
    _made[spec.name] = made
    return made
