"""`vivified create-plugin NAME --contract C [--lang python|node] [--dir DIR] [--json]`:
write a small, complete plugin project (Node.js: `_create_plugin_node`).

The project (in `DIR/NAME`) has a commented `manifest.yaml`, a servicer with
every RPC of the contract answering a minimal valid response (found by
introspecting the generated descriptors: request fields are echoed into
response fields of the same name and type), a `__main__` that runs it with the
SDK, a `pyproject.toml` depending on `vivified` whose `[tool.vivified] module`
tells `vivified up --plugin` what to run, and tests that run it against a real
core with `vivified.sdk.testing.LocalCore`. The templates are package data
(`templates/plugin/*.tmpl`)."""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from vivified.core.cli import _create_plugin_node
from vivified.core.contracts import CONTRACT_SERVICES
from vivified.core.errors import InvalidArgument
from vivified.options.v1 import options_pb2

_DOMAIN = "vivified.cli"
_NAME = re.compile(r"[a-z][a-z0-9-]{1,62}")
# The plugin-type trait of each contract that has one (core/traits/catalogue.json).
_TYPE_TRAITS = {
    "vivified.communication.v1.CommunicationPluginService": "communication_plugin",
    "vivified.storage.v1.StoragePluginService": "storage_plugin",
    "vivified.identity.v1.IdentityPluginService": "identity_plugin",
}
LANGUAGES = ("python", "node")
_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


@dataclass(frozen=True)
class Project:
    """What `create-plugin` wrote."""

    path: pathlib.Path
    plugin_id: str
    package: str
    contract: str
    files: tuple[str, ...]
    lang: str = "python"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    known = ", ".join(sorted({*short_names(), *CONTRACT_SERVICES}))
    cmd = sub.add_parser(
        "create-plugin",
        help="write a new plugin project (manifest, servicer, tests) for a contract",
        description="Write a small, complete plugin project in DIR/NAME: a commented manifest.yaml, a servicer "
        "answering every RPC of the contract, a pyproject.toml depending on vivified, and tests that run it "
        "against a real core. Then: cd DIR/NAME && python -m pytest; vivified up --plugin DIR/NAME. With --lang node: "
        "a TypeScript project on sdk/nodejs instead (then: npm install && npm test).",
    )
    cmd.add_argument("name", metavar="NAME", help="plugin id: 2-63 characters of a-z, 0-9 and '-'")
    cmd.add_argument("--contract", required=True, help=f"the contract service to serve: {known}")
    cmd.add_argument("--dir", type=pathlib.Path, default=pathlib.Path("."), help="parent directory (default .)")
    cmd.add_argument(
        "--lang",
        choices=LANGUAGES,
        default="python",
        help="python (default): a package run with `python -m`, tested with pytest against a real core; "
        "node: a TypeScript project on sdk/nodejs (package.json depending on the SDK by path), tested with "
        "`npm install && npm test` (node --test); both run with `vivified up --plugin DIR`",
    )
    cmd.add_argument("--json", action="store_true", help="print what was written as JSON")


def short_names() -> dict[str, str]:
    """`communication` -> `vivified.communication.v1.CommunicationPluginService`, for every known contract."""
    return {name.split(".")[1]: name for name in CONTRACT_SERVICES}


def resolve_contract(contract: str) -> ServiceDescriptor:
    full = short_names().get(contract, contract)
    service = CONTRACT_SERVICES.get(full)
    if service is None:
        raise InvalidArgument(
            f"--contract: {contract[:100]!r} is not a contract service; known: "
            f"{', '.join(sorted({*short_names(), *CONTRACT_SERVICES}))}",
            reason="UNKNOWN_CONTRACT",
            domain=_DOMAIN,
        )
    return service


def _classified(field: FieldDescriptor) -> bool:
    level: int = field.GetOptions().Extensions[options_pb2.classification]
    return level not in (
        options_pb2.CLASSIFICATION_UNSPECIFIED,
        options_pb2.CLASSIFICATION_PUBLIC,
        options_pb2.CLASSIFICATION_INTERNAL,
    )


def _same_kind(a: FieldDescriptor, b: FieldDescriptor) -> bool:
    if a.type != b.type or _repeated(a) != _repeated(b) or _is_map(a) or _is_map(b):
        return False
    return _type_name(a) == _type_name(b)


def _type_name(field: FieldDescriptor) -> str:
    """The message or enum type's full name ("" for scalars)."""
    named = field.message_type or field.enum_type
    return named.full_name if named is not None else ""


def _message(field: FieldDescriptor) -> Descriptor | None:
    return field.message_type if field.type == _MESSAGE else None


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    message = _message(field)
    return message is not None and message.GetOptions().map_entry


def echo_sources(request: Descriptor, response: Descriptor) -> list[tuple[FieldDescriptor, str]]:
    """(response field, request expression) for each response field the request
    carries under the same name and type, at its top level or one message down."""
    found: list[tuple[FieldDescriptor, str]] = []
    for out in response.fields:
        source = request.fields_by_name.get(out.name)
        if source is not None and _same_kind(source, out):
            found.append((out, f"request.{out.name}"))
            continue
        for holder in request.fields:
            holder_type = _message(holder)
            if holder_type is not None and not _repeated(holder):
                inner = holder_type.fields_by_name.get(out.name)
                if inner is not None and _same_kind(inner, out):
                    found.append((out, f"request.{holder.name}.{out.name}"))
                    break
    return found


def _class_in(module_file: str, descriptor: Descriptor) -> str | None:
    """`pb.Name` when the message is a top-level message of the contract's file."""
    if descriptor.file.name != module_file or descriptor.containing_type is not None:
        return None
    return f"pb.{descriptor.name}"


def sample_request(request: Descriptor, module_file: str) -> tuple[str, dict[str, str]]:
    """Python source building a request with every string field (and those of
    its message fields from the same file) set, and {expression: value} of them."""
    values: dict[str, str] = {}

    def build(descriptor: Descriptor, path: str, depth: int) -> str:
        args: list[str] = []
        for field in descriptor.fields:
            if _repeated(field):
                continue
            if field.type == _STRING:
                value = f"{field.name}-1"
                values[f"{path}.{field.name}"] = value
                args.append(f"{field.name}={value!r}")
            elif (nested := _message(field)) is not None and depth == 0:
                if _class_in(module_file, nested) is not None:
                    args.append(f"{field.name}={build(nested, f'{path}.{field.name}', 1)}")
        return f"{_class_in(module_file, descriptor)}({', '.join(args)})"

    return build(request, "request", 0), values


def _method_source(method: MethodDescriptor, module_file: str) -> str:
    request, response = method.input_type, method.output_type
    for message in (request, response):
        if _class_in(module_file, message) is None:
            raise InvalidArgument(
                f"{method.full_name}: {message.full_name} is not defined in {module_file}; "
                "create-plugin only handles contracts whose messages live beside the service",
                reason="CONTRACT_UNSUPPORTED",
                domain=_DOMAIN,
            )
    echoed = echo_sources(request, response)
    args = "".join(f"\n            {field.name}={source}," for field, source in echoed)
    body = f"pb.{response.name}({args}\n        )" if echoed else f"pb.{response.name}()"
    what = f"echoes {', '.join(field.name for field, _ in echoed)}" if echoed else "returns an empty response"
    return (
        f"\n    async def {method.name}(self, request: pb.{request.name}, context: Context) -> pb.{response.name}:\n"
        f'        """Minimal behaviour: {what}; every other field keeps its default."""\n'
        f"        self.served.append({method.name!r})\n"
        f'        _log.info("{method.name} served")\n'
        f"        return {body}\n"
    )


def _rpc_check(method: MethodDescriptor, module_file: str) -> str:
    source, values = sample_request(method.input_type, module_file)
    lines = [
        f"        reply = await core.call({source})",
        f"        assert isinstance(reply, pb.{method.output_type.name})",
    ]
    for field, expression in echo_sources(method.input_type, method.output_type):
        # Classified fields may be redacted for the caller; only unclassified ones are compared.
        if expression in values and not _classified(field):
            lines.append(f"        assert reply.{field.name} == {values[expression]!r}")
    return "\n".join(lines)


def _yaml_list(items: Iterable[str]) -> str:
    listed = [f"  - {item}" for item in items]
    return "\n".join(listed) if listed else "  []"


def render(name: str, service: ServiceDescriptor, lang: str = "python") -> dict[str, str]:
    """{relative path: content} of the project for plugin `name` serving `service` in `lang`."""
    package = name.replace("-", "_")
    module = service.file.name.removesuffix(".proto").replace("/", ".")
    proto_module, pb2 = module.rsplit(".", 1)[0], module.rsplit(".", 1)[1] + "_pb2"
    unary = [m for m in service.methods if not m.client_streaming and not m.server_streaming]
    if len(unary) != len(service.methods):
        raise InvalidArgument(
            f"{service.full_name} has streaming RPCs; create-plugin handles unary contracts only",
            reason="CONTRACT_UNSUPPORTED",
            domain=_DOMAIN,
        )
    trait = _TYPE_TRAITS.get(service.full_name)
    if lang == "node":
        return _create_plugin_node.render(
            name,
            service,
            _yaml_list([trait] if trait else []),
            _yaml_list(f"{service.full_name}/{m.name}" for m in unary),
        )
    values = {
        "plugin_id": name,
        "package": package,
        "title": " ".join(part.capitalize() for part in name.split("-")),
        "class_name": "".join(part.capitalize() for part in name.split("-")) + "Plugin",
        "service": service.full_name,
        "service_name": service.name,
        "proto_module": proto_module,
        "pb2": pb2,
        "traits": _yaml_list([trait] if trait else []),
        "provides": _yaml_list(f"{service.full_name}/{m.name}" for m in unary),
        "methods": "".join(_method_source(m, service.file.name) for m in unary),
        "rpc_checks": "\n".join(_rpc_check(m, service.file.name) for m in unary),
        "served": ", ".join(repr(m.name) for m in unary),
    }
    layout = {
        "manifest.yaml": "manifest.yaml.tmpl",
        "pyproject.toml": "pyproject.toml.tmpl",
        f"{package}/__init__.py": "__init__.py.tmpl",
        f"{package}/__main__.py": "__main__.py.tmpl",
        f"{package}/plugin.py": "plugin.py.tmpl",
        "tests/test_plugin.py": "test_plugin.py.tmpl",
    }
    templates = resources.files("vivified.core.cli").joinpath("templates", "plugin")
    return {
        path: string.Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)
        for path, template in layout.items()
    }


def create(name: str, contract: str, parent: pathlib.Path, lang: str = "python") -> Project:
    """Write the project to `parent/name`; refuses a name that is not a plugin
    id and a target that already exists and is not empty."""
    if not _NAME.fullmatch(name) or "--" in name or name.endswith("-"):
        raise InvalidArgument(
            f"NAME: {name[:100]!r} must be 2-63 characters of a-z, 0-9 and '-', start with a letter, "
            "not end with '-' and not contain '--' (it becomes the plugin id)",
            reason="INVALID_PLUGIN_NAME",
            domain=_DOMAIN,
        )
    service = resolve_contract(contract)
    if lang not in LANGUAGES:
        raise InvalidArgument(
            f"--lang: {lang[:20]!r} is not one of {', '.join(LANGUAGES)}", reason="UNKNOWN_LANGUAGE", domain=_DOMAIN
        )
    files = render(name, service, lang)
    target = parent / name
    if target.exists() and any(target.iterdir()):
        raise InvalidArgument(f"{target} already exists and is not empty", reason="TARGET_EXISTS", domain=_DOMAIN)
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return Project(target, name, name.replace("-", "_"), service.full_name, tuple(files), lang)


def run(args: argparse.Namespace, out: list[str]) -> int:
    """Exit 0 with what was written, or 1 with the refusal's message and reason."""
    try:
        project = create(args.name, args.contract, args.dir, args.lang)
    except InvalidArgument as error:
        if args.json:
            out.append(json.dumps({"created": False, "reason": error.reason, "message": error.message}, indent=2))
        print(f"error: {error.message} [{error.reason}]", file=sys.stderr)
        return 1
    if args.json:
        out.append(
            json.dumps(
                {
                    "created": True,
                    "path": str(project.path),
                    "plugin_id": project.plugin_id,
                    "package": project.package,
                    "contract": project.contract,
                    "files": list(project.files),
                    "lang": project.lang,
                },
                indent=2,
            )
        )
    else:
        out.append(f"created {project.path} ({project.plugin_id}, serving {project.contract})")
        if project.lang == "node":
            out.append(f"  test:  cd {project.path} && npm install && npm test")
        else:
            out.append(f"  test:  cd {project.path} && python -m pytest")
        out.append(f"  run:   vivified up --plugin {project.path}")
    return 0
