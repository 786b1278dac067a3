"""The plugins under test: every plugin under `plugins/` that ships a manifest
and can run standalone, as a command plus that manifest (nothing else is
known about it: the suite is language-neutral).

A Python plugin has `__main__.py` (run as `python -m vivified.plugins.<name>`),
a Node.js plugin a `package.json` whose `main` it runs with `node`. The probe
is one operation the plugin `provides` and the answer it gives to a request
for an unknown id: a call the plugin itself answers, whatever its state."""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from vivified.core.manifest import load_manifest_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"

# Every generated contract module, so a probe's service is in the descriptor pool.
for _module in sorted((ROOT / "gen").glob("vivified/*/v1/*_pb2.py")):
    importlib.import_module(".".join(_module.relative_to(ROOT / "gen").with_suffix("").parts))


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
        """The first `Get…` operation the plugin provides (`pkg.Service/Method`)."""
        provided = [m for m in load_manifest_file(self.manifest).provides if m.rsplit("/", 1)[1].startswith("Get")]
        assert provided, f"{self.name} provides no Get… operation to probe"
        return provided[0]

    def probe_request(self) -> Message:
        """The probe's request for an unknown id: its first string field set to `conformance-probe`."""
        service, method = self.probe.split("/")
        rpc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
        request = message_factory.GetMessageClass(rpc.input_type)()
        field = next(f for f in rpc.input_type.fields if f.type == f.TYPE_STRING)
        setattr(request, field.name, "conformance-probe")
        return request

    def call_probe(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryCall:  # type: ignore[type-arg]
        """The probe as a generic unary call on `channel` (request bytes out, response bytes back)."""
        return channel.unary_unary(f"/{self.probe}", request_serializer=lambda m: m.SerializeToString())


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
