"""`vivified create-plugin NAME --lang node`: the Node.js (TypeScript) project.

The project has the same parts as the Python one: a commented `manifest.yaml`,
`src/plugin.ts` with a handler for every RPC of the contract answering a
minimal valid response (request fields echoed into response fields of the same
name and type, found from the generated descriptors as for Python),
`src/main.ts` running it with `@vivified/sdk` (handlers on the TypeScript
types generated from proto/, `gen/ts`), a `package.json` depending on the SDK
and the generated types by path (this checkout's `sdk/nodejs` and `gen/ts`) whose `main` is what
`vivified up --plugin DIR` starts with `node`, and unit tests run by
`node --test` (`npm test`). The templates are the `node-*.tmpl` package data
beside the Python ones."""

from __future__ import annotations

import json
import pathlib
import string
from importlib import resources

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from vivified.core.errors import InvalidArgument

_DOMAIN = "vivified.cli"


def sdk_directory() -> pathlib.Path:
    """`sdk/nodejs` of the checkout this `vivified` runs from (the SDK is installed from its path, not a registry)."""
    import vivified.core

    root = pathlib.Path(vivified.core.__file__).resolve().parent.parent
    sdk = root / "sdk" / "nodejs"
    if not (sdk / "package.json").is_file():
        raise InvalidArgument(
            f"--lang node: the Node.js SDK is not at {sdk} (it ships in the source checkout; run tools/setup.sh there)",
            reason="NODE_SDK_MISSING",
            domain=_DOMAIN,
        )
    return sdk


def local_name(field: FieldDescriptor) -> str:
    """The property protoc-gen-es gives a field: its name in lowerCamelCase (`message_id` -> `messageId`)."""
    out: list[str] = []
    upper = False
    for char in field.name:
        if char == "_":
            upper = True
        elif char.isdigit():
            out.append(char)
            upper = False
        else:
            out.append(char.upper() if upper else char)
            upper = False
    return "".join(out)


def _in_oneof(field: FieldDescriptor) -> bool:
    """A member of a real oneof (protoc-gen-es puts those under the oneof's name); proto3 `optional` is not."""
    oneof = field.containing_oneof
    return oneof is not None and not (len(oneof.fields) == 1 and oneof.name == f"_{field.name}")


def _schema(descriptor: Descriptor) -> str:
    """The schema's name in the generated module: `SendMessageRequestSchema`, `Outer_InnerSchema`."""
    package = descriptor.file.package
    return descriptor.full_name.removeprefix(f"{package}.").replace(".", "_") + "Schema"


def _module(descriptor: Descriptor | ServiceDescriptor) -> str:
    return f"@vivified/gen/{descriptor.file.name.removesuffix('.proto')}_pb.js"


def _imports(names: dict[str, set[str]]) -> str:
    return "\n".join(
        f"import {{ {', '.join(sorted(found))} }} from {json.dumps(module)};" for module, found in sorted(names.items())
    )


def _echoed(method: MethodDescriptor) -> list[tuple[FieldDescriptor, str]]:
    """(response field, typed request expression) of each echoed field outside real oneofs."""
    from vivified.core.cli._create_plugin import echo_sources

    found = []
    for field, source in echo_sources(method.input_type, method.output_type):
        _, *path = source.split(".")
        holders = [method.input_type.fields_by_name[path[0]]]
        holder_type = holders[0].message_type
        if len(path) == 2 and holder_type is not None:
            holders.append(holder_type.fields_by_name[path[1]])
        if _in_oneof(field) or any(_in_oneof(h) for h in holders):
            continue
        parts = [local_name(h) for h in holders]
        found.append((field, "request." + "?.".join(parts)))
    return found


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _handler_source(method: MethodDescriptor) -> str:
    echoed = _echoed(method)
    fields = ", ".join(f"{local_name(field)}: {source}" for field, source in echoed)
    body = f"{{ {fields} }}" if fields else "{}"
    what = f"echoes {', '.join(local_name(field) for field, _ in echoed)}" if echoed else "returns an empty response"
    return (
        f"\n      // Minimal behaviour: {what}; every other field keeps its default.\n"
        f"      {_lower_first(method.name)}: (request) => {{\n"
        f"        this.served.push({json.dumps(method.name)});\n"
        f"        return {body};\n"
        f"      }},"
    )


def _sample(method: MethodDescriptor) -> tuple[str, dict[str, str]]:
    """An init-shape literal with every string field of the request (and of its
    non-repeated message fields, one level down) set, and {typed expression: value}."""
    from vivified.core.cli._create_plugin import _STRING, _message, _repeated

    values: dict[str, str] = {}

    def build(descriptor: Descriptor, path: str, depth: int) -> str:
        parts: list[str] = []
        for field in descriptor.fields:
            if _repeated(field) or _in_oneof(field):
                continue
            name = local_name(field)
            if field.type == _STRING:
                value = f"{field.name}-1"
                values[f"{path}?.{name}" if depth else f"{path}.{name}"] = value
                parts.append(f"{name}: {json.dumps(value)}")
            elif (nested := _message(field)) is not None and depth == 0 and not nested.GetOptions().map_entry:
                inner = build(nested, f"{path}.{name}", 1)
                if inner != "{}":
                    parts.append(f"{name}: {inner}")
        return "{ " + ", ".join(parts) + " }" if parts else "{}"

    return build(method.input_type, "request", 0), values


def _rpc_check(method: MethodDescriptor) -> str:
    literal, values = _sample(method)
    request, response = _schema(method.input_type), _schema(method.output_type)
    lines = [
        "  {",
        f"    const reply = await handlers.{_lower_first(method.name)}!(create({request}, {literal}), context);",
        "    // A valid response: it encodes as the contract's response type and keeps its fields.",
        f"    const decoded = fromBinary({response}, toBinary({response}, create({response}, reply)));",
    ]
    checked = False
    for field, expression in _echoed(method):
        if expression in values:
            lines.append(f"    assert.equal(decoded.{local_name(field)}, {json.dumps(values[expression])});")
            checked = True
    if not checked:
        lines.append(f"    assert.equal(decoded.$typeName, {json.dumps(method.output_type.full_name)});")
    lines.append("  }")
    return "\n".join(lines)


def render(name: str, service: ServiceDescriptor, traits: str, provides: str) -> dict[str, str]:
    """{relative path: content} of the Node.js project for plugin `name` serving `service` (unary RPCs only)."""
    sdk = sdk_directory()
    dev = json.loads((sdk / "package.json").read_text(encoding="utf-8")).get("devDependencies", {})
    methods = list(service.methods)
    test_names: dict[str, set[str]] = {}
    for method in methods:
        for message in (method.input_type, method.output_type):
            test_names.setdefault(_module(message), set()).add(_schema(message))
    values = {
        "plugin_id": name,
        "package": name.replace("-", "_"),
        "title": " ".join(part.capitalize() for part in name.split("-")),
        "class_name": "".join(part.capitalize() for part in name.split("-")) + "Plugin",
        "service": service.full_name,
        "traits": traits,
        "provides": provides,
        "service_name": service.name,
        "service_import": _imports({_module(service): {service.name}}),
        "test_imports": _imports(test_names),
        "handlers": "".join(_handler_source(m) for m in methods),
        "rpc_checks": "\n".join(_rpc_check(m) for m in methods),
        "served": ", ".join(json.dumps(m.name) for m in methods),
        "sdk_path": str(sdk),
        "gen_path": str(sdk.parent.parent / "gen" / "ts"),
        # The same compiler and Node types the SDK builds with (tools/setup_run.sh puts them in npm's cache).
        "typescript": str(dev.get("typescript", "5.9.3")),
        "types_node": str(dev.get("@types/node", "20.19.43")),
    }
    layout = {
        "manifest.yaml": "node-manifest.yaml.tmpl",
        "package.json": "node-package.json.tmpl",
        "tsconfig.json": "node-tsconfig.json.tmpl",
        ".gitignore": "node-gitignore.tmpl",
        "src/plugin.ts": "node-plugin.ts.tmpl",
        "src/main.ts": "node-main.ts.tmpl",
        "test/plugin.test.ts": "node-plugin.test.ts.tmpl",
    }
    templates = resources.files("vivified.core.cli").joinpath("templates", "plugin")
    return {
        path: string.Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)
        for path, template in layout.items()
    }
