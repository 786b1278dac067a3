"""`vivified create-plugin NAME --lang node`: the Node.js (TypeScript) project.

The project has the same parts as the Python one: a commented `manifest.yaml`,
`src/plugin.ts` with a handler for every RPC of the contract answering a
minimal valid response (request fields echoed into response fields of the same
name and type, found from the generated descriptors as for Python),
`src/main.ts` running it with `@vivified/sdk`, a `package.json` depending on
the SDK by path (this checkout's `sdk/nodejs`) whose `main` is what
`vivified up --plugin DIR` starts with `node`, and unit tests run by
`node --test` (`npm test`). The templates are the `node-*.tmpl` package data
beside the Python ones."""

from __future__ import annotations

import json
import pathlib
import string
from importlib import resources

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
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


def _js_path(expression: str) -> str:
    """`request.message.message_id` -> `request["message"]?.["message_id"]`."""
    head, *parts = expression.split(".")
    return head + "".join(f'{"?." if i else ""}[{json.dumps(p)}]' for i, p in enumerate(parts))


def _handler_source(method: MethodDescriptor) -> str:
    from vivified.core.cli._create_plugin import echo_sources

    echoed = echo_sources(method.input_type, method.output_type)
    fields = "".join(f"\n            {field.name}: {_js_path(source)}," for field, source in echoed)
    body = f"{{{fields}\n          }}" if echoed else "{}"
    what = f"echoes {', '.join(field.name for field, _ in echoed)}" if echoed else "returns an empty response"
    return (
        f"\n        // Minimal behaviour: {what}; every other field keeps its default.\n"
        f"        {method.name}: (request: Message) => {{\n"
        f"          this.served.push({json.dumps(method.name)});\n"
        f"          return {body};\n"
        f"        }},"
    )


def _sample(method: MethodDescriptor) -> tuple[str, dict[str, str]]:
    """A JS object literal with every string field of the request (and of its
    non-repeated message fields, one level down) set, and {expression: value}."""
    from vivified.core.cli._create_plugin import _message, _repeated, _STRING

    values: dict[str, str] = {}

    def build(descriptor: object, path: str, depth: int) -> str:
        parts: list[str] = []
        for field in descriptor.fields:  # type: ignore[attr-defined]
            if _repeated(field):
                continue
            if field.type == _STRING:
                value = f"{field.name}-1"
                values[f"{path}.{field.name}"] = value
                parts.append(f"{field.name}: {json.dumps(value)}")
            elif (nested := _message(field)) is not None and depth == 0 and not nested.GetOptions().map_entry:
                parts.append(f"{field.name}: {build(nested, f'{path}.{field.name}', 1)}")
        return "{ " + ", ".join(parts) + " }" if parts else "{}"

    return build(method.input_type, "request", 0), values


def _rpc_check(method: MethodDescriptor) -> str:
    from vivified.core.cli._create_plugin import echo_sources

    literal, values = _sample(method)
    request_type, response_type = method.input_type.full_name, method.output_type.full_name
    lines = [
        "  {",
        f"    const reply = await handlers[{json.dumps(method.name)}]!(request({json.dumps(request_type)}, {literal}), context);",
        "    // A valid response: it encodes as the contract's response type and keeps its fields.",
        f"    const decoded = protos.decode({json.dumps(response_type)}, protos.encode({json.dumps(response_type)}, reply));",
        "    assert.ok(decoded);",
    ]
    for field, expression in echo_sources(method.input_type, method.output_type):
        if expression in values:
            lines.append(f"    assert.equal(decoded[{json.dumps(field.name)}], {json.dumps(values[expression])});")
    lines.append("  }")
    return "\n".join(lines)


def render(name: str, service: ServiceDescriptor, traits: str, provides: str) -> dict[str, str]:
    """{relative path: content} of the Node.js project for plugin `name` serving `service` (unary RPCs only)."""
    sdk = sdk_directory()
    dev = json.loads((sdk / "package.json").read_text(encoding="utf-8")).get("devDependencies", {})
    methods = list(service.methods)
    values = {
        "plugin_id": name,
        "package": name.replace("-", "_"),
        "title": " ".join(part.capitalize() for part in name.split("-")),
        "class_name": "".join(part.capitalize() for part in name.split("-")) + "Plugin",
        "service": service.full_name,
        "traits": traits,
        "provides": provides,
        "handlers": "".join(_handler_source(m) for m in methods),
        "rpc_checks": "\n".join(_rpc_check(m) for m in methods),
        "served": ", ".join(json.dumps(m.name) for m in methods),
        "sdk_path": str(sdk),
        # The same compiler and Node types the SDK builds with (already in npm's cache after setup).
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
