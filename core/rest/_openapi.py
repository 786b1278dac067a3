"""An OpenAPI 3.0 document of the REST bridge, generated from the same
descriptor set Envoy transcodes with (so the document, the routes and the
gRPC contracts cannot drift apart). Field names are the proto3 JSON names
the transcoder prints and accepts; descriptions are the proto comments."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from google.api import http_pb2
from google.protobuf import descriptor_pb2

from vivified.core.rest._served import http_rule

FDP = descriptor_pb2.FieldDescriptorProto
_VERBS = ("get", "put", "post", "delete", "patch")
_SCALARS: dict[int, dict[str, Any]] = {
    FDP.TYPE_STRING: {"type": "string"},
    FDP.TYPE_BYTES: {"type": "string", "format": "byte"},
    FDP.TYPE_BOOL: {"type": "boolean"},
    FDP.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FDP.TYPE_FLOAT: {"type": "number", "format": "float"},
    FDP.TYPE_INT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FDP.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FDP.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # proto3 JSON writes 64-bit integers as strings.
    FDP.TYPE_INT64: {"type": "string", "format": "int64"},
    FDP.TYPE_SINT64: {"type": "string", "format": "int64"},
    FDP.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FDP.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FDP.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    ".google.protobuf.FieldMask": {"type": "string", "description": "comma-separated field paths"},
    ".google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
    ".google.protobuf.Empty": {"type": "object"},
}


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(location.path): " ".join(location.leading_comments.split())
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


class _Catalogue:
    """Every message and enum of the set by full name (`.pkg.Name`), with comments."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[
            str, tuple[descriptor_pb2.DescriptorProto, tuple[int, ...], dict[tuple[int, ...], str]]
        ] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        for file in files.file:
            comments = _comments(file)
            prefix = f".{file.package}" if file.package else ""
            for index, message in enumerate(file.message_type):
                self._add(message, prefix, (4, index), comments)
            for enum in file.enum_type:
                self.enums[f"{prefix}.{enum.name}"] = enum

    def _add(
        self,
        message: descriptor_pb2.DescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = (message, path, comments)
        for index, nested in enumerate(message.nested_type):
            self._add(nested, name, (*path, 3, index), comments)
        for enum in message.enum_type:
            self.enums[f"{name}.{enum.name}"] = enum


def _ref(type_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{type_name.lstrip('.')}"}


class _Builder:
    def __init__(self, catalogue: _Catalogue) -> None:
        self.catalogue = catalogue
        self.schemas: dict[str, Any] = {}

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type == FDP.TYPE_MESSAGE and self._is_map(field.type_name):
            entry = self.catalogue.messages[field.type_name][0]
            return {"type": "object", "additionalProperties": self.field_schema(entry.field[1])}
        if field.type == FDP.TYPE_MESSAGE:
            item = self.message_ref(field.type_name)
        elif field.type == FDP.TYPE_ENUM:
            enum = self.catalogue.enums[field.type_name]
            item = {"type": "string", "enum": [value.name for value in enum.value]}
        else:
            item = dict(_SCALARS[field.type])
        if field.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def _is_map(self, type_name: str) -> bool:
        found = self.catalogue.messages.get(type_name)
        return found is not None and found[0].options.map_entry

    def message_ref(self, type_name: str) -> dict[str, Any]:
        if type_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[type_name])
        key = type_name.lstrip(".")
        if key not in self.schemas:
            message, path, comments = self.catalogue.messages[type_name]
            self.schemas[key] = {}  # placeholder: recursive messages refer to themselves
            properties = {}
            for index, field in enumerate(message.field):
                property_schema = self.field_schema(field)
                if (text := comments.get((*path, 2, index))) and "$ref" not in property_schema:
                    property_schema["description"] = text
                properties[field.json_name or field.name] = property_schema
            schema: dict[str, Any] = {"type": "object", "properties": properties}
            if text := comments.get(path):
                schema["description"] = text
            self.schemas[key] = schema
        return _ref(type_name)


def _rule_verb(rule: http_pb2.HttpRule) -> tuple[str, str]:
    for verb in _VERBS:
        if value := getattr(rule, verb):
            return verb, value
    raise ValueError(f"unsupported google.api.http rule {rule}")


def _rules(method: descriptor_pb2.MethodDescriptorProto) -> Iterator[http_pb2.HttpRule]:
    rule = http_rule(method.options)
    if rule is not None:
        yield rule
        yield from rule.additional_bindings


def _path_fields(template: str) -> list[str]:
    return re.findall(r"\{([a-z0-9_.]+)(?:=[^}]*)?\}", template)


def openapi_document(
    files: descriptor_pb2.FileDescriptorSet, services: tuple[str, ...], *, title: str = "Vivified REST API"
) -> dict[str, Any]:
    """OpenAPI 3.0.3 for every annotated method of `services`."""
    catalogue = _Catalogue(files)
    builder = _Builder(catalogue)
    status_ref = builder.message_ref(".google.rpc.Status")
    paths: dict[str, dict[str, Any]] = {}
    wanted = set(services)
    for file in files.file:
        comments = _comments(file)
        for s_index, service in enumerate(file.service):
            full = f"{file.package}.{service.name}"
            if full not in wanted:
                continue
            for m_index, method in enumerate(service.method):
                for rule in _rules(method):
                    verb, template = _rule_verb(rule)
                    request, _, _ = catalogue.messages[method.input_type]
                    bound = _path_fields(template)
                    parameters: list[dict[str, Any]] = [
                        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in bound
                    ]
                    operation: dict[str, Any] = {
                        "operationId": f"{service.name}_{method.name}",
                        "tags": [service.name],
                        "summary": comments.get((6, s_index, 2, m_index), method.name),
                        "responses": {
                            "200": {
                                "description": "OK",
                                "content": {
                                    "application/json": {
                                        "schema": (
                                            {"type": "array", "items": builder.message_ref(method.output_type)}
                                            if method.server_streaming
                                            else builder.message_ref(method.output_type)
                                        )
                                    }
                                },
                            },
                            "default": {
                                "description": "an error: google.rpc.Status with google.rpc.ErrorInfo "
                                "(reason, domain, metadata.rule_id) in details",
                                "content": {"application/json": {"schema": status_ref}},
                            },
                        },
                    }
                    if rule.body == "*":
                        operation["requestBody"] = {
                            "required": True,
                            "content": {"application/json": {"schema": builder.message_ref(method.input_type)}},
                        }
                    else:
                        for field in request.field:
                            if field.name in bound or (
                                field.type == FDP.TYPE_MESSAGE and field.type_name not in _WELL_KNOWN
                            ):
                                continue
                            parameters.append(
                                {
                                    "name": field.json_name or field.name,
                                    "in": "query",
                                    "schema": builder.field_schema(field),
                                }
                            )
                    if parameters:
                        operation["parameters"] = parameters
                    paths.setdefault(template, {})[verb] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "v1",
            "description": (
                "Every route is a gRPC method of the Vivified core, transcoded by Envoy: each request passes the core's "
                "chain (authentication, status gate, rate limit, default-deny policy, audit) like a gRPC call."
            ),
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }
