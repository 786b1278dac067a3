"""Which services the REST bridge transcodes: those the core serves
(`vivified.core.services.SERVED`, the one list) whose methods
carry `google.api.http` annotations."""

from __future__ import annotations

from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from vivified.core.services import SERVED

_HTTP: Any = getattr(annotations_pb2, "http")  # noqa: B009 - the stubs type it as a plain field
"""The `google.api.http` method option (its stubs type it too loosely for `Extensions[...]`)."""


def http_rule(options: descriptor_pb2.MethodOptions) -> http_pb2.HttpRule | None:
    """A method's `google.api.http` rule, or None."""
    if not options.HasExtension(_HTTP):
        return None
    rule: http_pb2.HttpRule = options.Extensions[_HTTP]
    return rule


def served_service_names() -> tuple[str, ...]:
    """Full names of every service the core serves, in `SERVED` order."""
    return tuple(served.name for served in SERVED)


def annotated_services(files: descriptor_pb2.FileDescriptorSet) -> tuple[str, ...]:
    """Full names of the services in `files` with at least one method carrying
    a `google.api.http` rule."""
    names = []
    for file in files.file:
        for service in file.service:
            if any(http_rule(method.options) is not None for method in service.method):
                names.append(f"{file.package}.{service.name}" if file.package else service.name)
    return tuple(names)


def transcoded_services(files: descriptor_pb2.FileDescriptorSet) -> tuple[str, ...]:
    """The served services that have REST annotations, in the order the core serves them."""
    annotated = set(annotated_services(files))
    return tuple(name for name in served_service_names() if name in annotated)


def streamed_paths(files: descriptor_pb2.FileDescriptorSet, services: tuple[str, ...]) -> tuple[str, ...]:
    """The GET paths (without path parameters) of the server-streaming methods
    of `services`: live feeds, which Envoy's per-request timeout must not cut."""
    paths = []
    for file in files.file:
        for service in file.service:
            full = f"{file.package}.{service.name}" if file.package else service.name
            if full not in services:
                continue
            for method in service.method:
                rule = http_rule(method.options)
                if method.server_streaming and rule is not None and rule.get and "{" not in rule.get:
                    paths.append(rule.get)
    return tuple(sorted(paths))
