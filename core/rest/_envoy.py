"""The Envoy configuration of the REST bridge, generated (never hand-written).

One TLS listener for browsers and scripts; Envoy's `grpc_json_transcoder`
turns each `google.api.http` route into a gRPC call to the core's bootstrap
port over TLS that verifies the core's certificate (its SPIFFE ID), so every
request passes the same chain as a gRPC client's. What reaches the core as
metadata is only `authorization` and `x-api-key`: a Lua filter removes every
other header a client sent before the transcoder builds the gRPC call (and
refuses native gRPC, which would pass the transcoder untouched), and the
router adds no `x-envoy-*` headers. Errors come back as JSON
(`google.rpc.Status` with its `ErrorInfo` details) with the HTTP status of the
gRPC code. Envoy's own limits are set (body size, header size and count,
timeouts, connections) and its admin interface is off."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASSED_HEADERS = ("authorization", "x-api-key")
"""The only client headers the core receives as gRPC metadata."""

_TRANSPORT_HEADERS = ("content-type", "content-length")
"""Kept for the transcoder to read the JSON body; it sets the gRPC ones itself."""

_ENVOY_SET_HEADERS = ("x-forwarded-proto",)
"""Envoy writes this itself at the edge (`use_remote_address`), whatever the
client sent, and its router needs it to match; the route removes it before
the call goes to the core."""

OPENAPI_PATH = "/v1/openapi.json"
MAX_OPENAPI_BYTES = 1024 * 1024
"""Envoy serves the OpenAPI document itself (a direct response) up to this size."""
MAX_CONSOLE_FILE_BYTES = 1024 * 1024
"""The console's files are Envoy direct responses too; each must fit this."""
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The admin console's Content-Security-Policy: its own scripts and styles only
(no inline script or style), calls to this origin only, never framed."""
_CONSOLE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
_TLS = "envoy.transport_sockets.tls"
_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


@dataclass(frozen=True)
class BridgeLimits:
    """Envoy's own limits on what a client may send and how long it may take."""

    max_request_bytes: int = 1024 * 1024
    max_response_bytes: int = 8 * 1024 * 1024
    max_request_headers_kb: int = 32
    max_headers_count: int = 64
    request_timeout_seconds: int = 30
    """Whole request, first byte to last response byte; also the upstream route timeout."""
    request_headers_timeout_seconds: int = 10
    stream_idle_timeout_seconds: int = 60
    idle_connection_timeout_seconds: int = 300
    max_connections: int = 1024
    max_concurrent_streams: int = 100
    live_stream_max_seconds: int = 3600
    """A live feed (a server-streaming GET, e.g. `/v1/audit/records:watch`) is not
    bound by `request_timeout_seconds`: it lasts at most this (the client subscribes again)."""
    live_stream_idle_seconds: int = 600
    """A live feed with nothing to send for this long is closed."""

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"REST bridge limit {name} must be a positive integer, not {value!r}")


@dataclass(frozen=True)
class BridgeConfig:
    """Everything the generated Envoy configuration says."""

    listen_host: str
    listen_port: int
    core_host: str
    core_port: int
    core_server_name: str
    """The name Envoy sends as SNI and the core's certificate carries (`core.<trust domain>`)."""
    core_spiffe_id: str
    """The URI SAN the core's certificate must carry; any other certificate is refused."""
    ca_file: Path
    cert_file: Path
    key_file: Path
    descriptor_file: Path
    openapi_file: Path
    services: tuple[str, ...]
    limits: BridgeLimits = field(default_factory=BridgeLimits)
    streamed_paths: tuple[str, ...] = ()
    """GET paths of server-streaming methods (live feeds): routed without the request timeout."""
    console_dir: Path | None = None
    """The built admin console (core/ui/dist): each file is served at its path, `index.html` also at `/`."""

    def __post_init__(self) -> None:
        if not self.services:
            raise ValueError("the REST bridge needs at least one service to transcode")
        if not 0 < self.listen_port < 65536 or not 0 < self.core_port < 65536:
            raise ValueError("the listener's and the core's ports must be in 1..65535")


def strip_headers_lua() -> str:
    """The Lua filter that refuses native gRPC and gRPC-web (a local reply,
    which Envoy turns into grpc-status UNKNOWN for such a client) and drops every client
    header but `PASSED_HEADERS` (and the body's content type and length);
    pseudo-headers stay."""
    keep = ", ".join(f'["{name}"] = true' for name in (*PASSED_HEADERS, *_TRANSPORT_HEADERS, *_ENVOY_SET_HEADERS))
    return (
        f"local keep = {{{keep}}}\n"
        "function envoy_on_request(request_handle)\n"
        "  local headers = request_handle:headers()\n"
        # Native gRPC (and gRPC-web) would pass the transcoder untouched: this listener serves JSON only.
        '  local kind = headers:get("content-type") or ""\n'
        '  if string.find(string.lower(kind), "application/grpc", 1, true) == 1 then\n'
        '    request_handle:respond({[":status"] = "415", ["content-type"] = "text/plain"},\n'
        '      "this listener serves JSON; gRPC clients call the core\'s bootstrap port")\n'
        "    return\n"
        "  end\n"
        "  local drop = {}\n"
        "  for key, _ in pairs(headers) do\n"
        '    if string.sub(key, 1, 1) ~= ":" and not keep[string.lower(key)] then\n'
        "      drop[#drop + 1] = key\n"
        "    end\n"
        "  end\n"
        "  for _, key in ipairs(drop) do\n"
        "    headers:remove(key)\n"
        "  end\n"
        "end\n"
    )


def _seconds(value: int) -> str:
    return f"{value}s"


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


_NO_TRANSCODER = {_TRANSCODER: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}}


def console_files(console_dir: Path) -> list[tuple[str, Path]]:
    """(URL path, file) for every file of the built console, `/` for index.html.
    Only known static types are served; a file too large for a direct response is refused."""
    root = console_dir.resolve()
    if not (root / "index.html").is_file():
        raise ValueError(f"{root} has no index.html: build the console first (npm run build in core/ui)")
    served: list[tuple[str, Path]] = [("/", root / "index.html")]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix not in _CONSOLE_TYPES:
            continue
        if path.stat().st_size > MAX_CONSOLE_FILE_BYTES:
            raise ValueError(f"console file {path} is larger than Envoy serves ({MAX_CONSOLE_FILE_BYTES} bytes)")
        served.append(("/" + path.relative_to(root).as_posix(), path))
    return served


def _console_routes(config: BridgeConfig) -> list[dict[str, Any]]:
    if config.console_dir is None:
        return []
    routes = []
    for url, path in console_files(config.console_dir):
        # index.html is never cached (it names the hashed assets, which may be).
        cache = "no-store" if path.name == "index.html" else "public, max-age=31536000, immutable"
        routes.append(
            {
                "match": {"path": url, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
                "direct_response": {"status": 200, "body": {"filename": str(path)}},
                "response_headers_to_add": [
                    _header("content-type", _CONSOLE_TYPES[path.suffix]),
                    _header("content-security-policy", CONSOLE_CSP),
                    _header("x-content-type-options", "nosniff"),
                    _header("referrer-policy", "no-referrer"),
                    _header("x-frame-options", "DENY"),
                    _header("cross-origin-opener-policy", "same-origin"),
                    _header("cache-control", cache),
                ],
                "typed_per_filter_config": _NO_TRANSCODER,
            }
        )
    return routes


def _streamed_routes(config: BridgeConfig) -> list[dict[str, Any]]:
    """Live feeds: no per-request timeout, a maximum duration and an idle bound of their own."""
    limits = config.limits
    return [
        {
            "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            "route": {
                "cluster": "core",
                "timeout": "0s",
                "idle_timeout": _seconds(limits.live_stream_idle_seconds),
                "max_stream_duration": {"max_stream_duration": _seconds(limits.live_stream_max_seconds)},
            },
            "request_headers_to_remove": list(_ENVOY_SET_HEADERS),
        }
        for path in config.streamed_paths
    ]


def _routes(config: BridgeConfig) -> dict[str, Any]:
    return {
        "name": "rest",
        # The OpenAPI document (and the console's files) are served by Envoy itself, straight from the file.
        "max_direct_response_body_size_bytes": max(MAX_OPENAPI_BYTES, MAX_CONSOLE_FILE_BYTES),
        "virtual_hosts": [
            {
                "name": "rest",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {
                            "path": OPENAPI_PATH,
                            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
                        },
                        "direct_response": {"status": 200, "body": {"filename": str(config.openapi_file)}},
                        "response_headers_to_add": [
                            {
                                "header": {"key": "content-type", "value": "application/json"},
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                            },
                        ],
                        "typed_per_filter_config": _NO_TRANSCODER,
                    },
                    *_console_routes(config),
                    *_streamed_routes(config),
                    {
                        "match": {"prefix": "/"},
                        "route": {"cluster": "core", "timeout": _seconds(config.limits.request_timeout_seconds)},
                        "request_headers_to_remove": list(_ENVOY_SET_HEADERS),
                    },
                ],
            }
        ],
    }


def _filters(config: BridgeConfig) -> list[dict[str, Any]]:
    limits = config.limits
    return [
        {
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": strip_headers_lua()},
            },
        },
        {
            # The whole body, at most max_request_bytes, before anything is transcoded: a larger one is
            # answered 413 by Envoy and never reaches the core.
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": limits.max_request_bytes,
            },
        },
        {
            "name": _TRANSCODER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                "proto_descriptor": str(config.descriptor_file),
                "services": list(config.services),
                # A server stream is newline-delimited JSON: one message per line, readable as it comes.
                "print_options": {
                    "always_print_primitive_fields": True,
                    "always_print_enums_as_ints": False,
                    "stream_newline_delimited": True,
                },
                "convert_grpc_status": True,
                "request_validation_options": {
                    "reject_unknown_method": True,
                    "reject_unknown_query_parameters": True,
                    "reject_binding_body_field_collisions": True,
                },
                "max_request_body_size": limits.max_request_bytes,
                "max_response_body_size": limits.max_response_bytes,
            },
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": True,
            },
        },
    ]


def _listener(config: BridgeConfig) -> dict[str, Any]:
    limits = config.limits
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "rest",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "max_request_headers_kb": limits.max_request_headers_kb,
        "request_timeout": _seconds(limits.request_timeout_seconds),
        "request_headers_timeout": _seconds(limits.request_headers_timeout_seconds),
        "stream_idle_timeout": _seconds(limits.stream_idle_timeout_seconds),
        "common_http_protocol_options": {
            "max_headers_count": limits.max_headers_count,
            "idle_timeout": _seconds(limits.idle_connection_timeout_seconds),
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {"max_concurrent_streams": limits.max_concurrent_streams},
        "route_config": _routes(config),
        "http_filters": _filters(config),
    }
    return {
        "name": "rest",
        "address": {"socket_address": {"address": config.listen_host, "port_value": config.listen_port}},
        "filter_chains": [
            {
                "transport_socket": {
                    "name": _TLS,
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {
                            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                            "alpn_protocols": ["h2", "http/1.1"],
                            "tls_certificates": [
                                {
                                    "certificate_chain": {"filename": str(config.cert_file)},
                                    "private_key": {"filename": str(config.key_file)},
                                }
                            ],
                        },
                    },
                },
                "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}],
            }
        ],
    }


def _core_cluster(config: BridgeConfig) -> dict[str, Any]:
    address = {"socket_address": {"address": config.core_host, "port_value": config.core_port}}
    try:
        ipaddress.ip_address(config.core_host)
        is_ip = True
    except ValueError:
        is_ip = False
    return {
        "name": "core",
        "type": "STATIC" if is_ip else "STRICT_DNS",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": "core",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
        "transport_socket": {
            "name": _TLS,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": config.core_server_name,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": str(config.ca_file)},
                        "match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"exact": config.core_spiffe_id}},
                        ],
                    },
                },
            },
        },
    }


def envoy_config(config: BridgeConfig) -> dict[str, Any]:
    """The whole Envoy bootstrap: no admin interface, one listener, one cluster."""
    return {
        "node": {"id": "vivified-rest", "cluster": "vivified-rest"},
        "static_resources": {"listeners": [_listener(config)], "clusters": [_core_cluster(config)]},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": config.limits.max_connections,
                    },
                }
            ],
        },
    }
