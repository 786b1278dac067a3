"""The REST bridge: Envoy's `grpc_json_transcoder` in front of the core.

Public surface::

    write_bundle(BundleRequest) -> Bundle   envoy.yaml + descriptor set + openapi.json + TLS, in one directory
                                            (+ the built admin console at `/`, `default_console_dir`)
    render_config(BridgeConfig)             envoy.yaml's text
    envoy_config(BridgeConfig)              the generated Envoy bootstrap (no admin interface)
    BridgeLimits                            Envoy's own request limits
    openapi_document(files, services)       OpenAPI 3.0 from the same descriptor set
    served_service_names / transcoded_services   what the core serves, and which of it has REST routes
    streamed_paths                          the live feeds' GET paths (routed without the request timeout)
    find_envoy, validate_config, start_envoy     run the real binary by pid
    PASSED_HEADERS                          the only client headers the core receives as metadata

Errors: `FailedPrecondition` DESCRIPTORS_UNAVAILABLE, CA_UNAVAILABLE,
ENVOY_CONFIG_INVALID, ENVOY_NOT_STARTED, CONSOLE_UNAVAILABLE; `InvalidArgument` INVALID_ADDRESS,
INVALID_REQUEST (domain `vivified.rest`)."""

from vivified.core.rest._bundle import (
    DEFAULT_LISTEN,
    Bundle,
    BundleRequest,
    default_console_dir,
    render_config,
    split_address,
    write_bundle,
)
from vivified.core.rest._descriptors import build_descriptor_set, checkout_root, load_descriptor_set
from vivified.core.rest._envoy import (
    CONSOLE_CSP,
    OPENAPI_PATH,
    PASSED_HEADERS,
    BridgeConfig,
    BridgeLimits,
    envoy_config,
    strip_headers_lua,
)
from vivified.core.rest._openapi import openapi_document
from vivified.core.rest._process import EnvoyProcess, find_envoy, start_envoy, validate_config
from vivified.core.rest._served import annotated_services, served_service_names, streamed_paths, transcoded_services

__all__ = [
    "CONSOLE_CSP",
    "DEFAULT_LISTEN",
    "OPENAPI_PATH",
    "PASSED_HEADERS",
    "BridgeConfig",
    "BridgeLimits",
    "Bundle",
    "BundleRequest",
    "EnvoyProcess",
    "annotated_services",
    "build_descriptor_set",
    "default_console_dir",
    "checkout_root",
    "envoy_config",
    "find_envoy",
    "load_descriptor_set",
    "openapi_document",
    "render_config",
    "served_service_names",
    "split_address",
    "start_envoy",
    "streamed_paths",
    "strip_headers_lua",
    "transcoded_services",
    "validate_config",
    "write_bundle",
]
