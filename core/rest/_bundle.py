"""Writes everything Envoy needs to run the REST bridge into one directory:
envoy.yaml, the descriptor set, openapi.json, the core's CA (to verify the
core) and the listener's certificate and key."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from vivified.core.ca import (
    CAConfig,
    CertificateAuthority,
    atomic_write,
    core_dns_name,
    core_spiffe_id,
    new_private_key,
    write_private_key,
)
from vivified.core.clock import Clock, SystemClock
from vivified.core.errors import FailedPrecondition, InvalidArgument
from vivified.core.rest._descriptors import build_descriptor_set, checkout_root, load_descriptor_set
from vivified.core.rest._envoy import OPENAPI_PATH, BridgeConfig, BridgeLimits, envoy_config
from vivified.core.rest._openapi import openapi_document
from vivified.core.rest._served import transcoded_services

_DOMAIN = "vivified.rest"
DEFAULT_LISTEN = "127.0.0.1:8443"


def split_address(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"{what} {address!r} is not host:port", reason="INVALID_ADDRESS", domain=_DOMAIN)
    return host, int(port)


@dataclass(frozen=True)
class BundleRequest:
    """What `write_bundle` needs; see `vivified rest config --help` for each."""

    out_dir: Path
    core_address: str
    trust_domain: str
    core_ca_file: Path
    listen: str = DEFAULT_LISTEN
    descriptor_set: Path | None = None
    workspace: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_dir: Path | None = None
    tls_names: tuple[str, ...] = ("localhost",)
    limits: BridgeLimits = field(default_factory=BridgeLimits)


@dataclass(frozen=True)
class Bundle:
    config_file: Path
    url: str
    openapi_url: str
    services: tuple[str, ...]
    certificate: Path
    issued_by_core_ca: bool


def _listener_certificate(request: BundleRequest, host: str, clock: Clock) -> tuple[Path, Path, bool]:
    if request.tls_cert is not None or request.tls_key is not None:
        if request.tls_cert is None or request.tls_key is None:
            raise InvalidArgument("give both --tls-cert and --tls-key, or neither", reason="INVALID_REQUEST", domain=_DOMAIN)
        return request.tls_cert.resolve(), request.tls_key.resolve(), False
    ca_dir = request.ca_dir
    if ca_dir is None or not (ca_dir / "issuing.key").is_file():
        raise FailedPrecondition(
            f"no CA to issue the REST listener's certificate from in {ca_dir}: start the core once with this data "
            "directory, or give --tls-cert and --tls-key", reason="CA_UNAVAILABLE", domain=_DOMAIN,
        )
    ca = CertificateAuthority.load(
        ca_dir / "root.crt", ca_dir / "issuing.crt", ca_dir / "issuing.key", CAConfig(trust_domain=request.trust_domain), clock
    )
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    names = list(request.tls_names)
    try:
        address = ipaddress.ip_address(host)
        if address not in ips and not address.is_unspecified:
            ips.append(address)
    except ValueError:
        names.append(host)
    key = new_private_key()
    issued = ca.issue_rest_gateway_certificate(key, dns_names=tuple(dict.fromkeys(names)), ip_addresses=tuple(ips))
    tls = request.out_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    write_private_key(tls / "rest.key", key)
    atomic_write(tls / "rest.crt", issued.chain_pem, 0o644)
    return tls / "rest.crt", tls / "rest.key", True


def write_bundle(request: BundleRequest, *, clock: Clock | None = None) -> Bundle:
    """Build the descriptor set (unless given), the OpenAPI document, the
    listener certificate (unless given) and envoy.yaml in `request.out_dir`."""
    out = request.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    host, port = split_address(request.listen, "--listen")
    core_host, core_port = split_address(request.core_address, "--core-address")
    if request.descriptor_set is not None:
        descriptors = request.descriptor_set.resolve()
    else:
        workspace = request.workspace or checkout_root()
        if workspace is None:
            raise FailedPrecondition(
                "no descriptor set: give --descriptor-set (built with `buf build --as-file-descriptor-set`) "
                "when running from an installed package", reason="DESCRIPTORS_UNAVAILABLE", domain=_DOMAIN,
            )
        descriptors = build_descriptor_set(workspace, out / "vivified.binpb")
    files = load_descriptor_set(descriptors)
    services = transcoded_services(files)
    openapi = out / "openapi.json"
    openapi.write_text(json.dumps(openapi_document(files, services), indent=1, sort_keys=False) + "\n")
    ca_file = out / "core-ca.crt"
    atomic_write(ca_file, request.core_ca_file.read_bytes(), 0o644)
    cert, key, issued = _listener_certificate(request, host, clock or SystemClock())
    config = BridgeConfig(
        listen_host=host, listen_port=port, core_host=core_host, core_port=core_port,
        core_server_name=core_dns_name(request.trust_domain), core_spiffe_id=core_spiffe_id(request.trust_domain),
        ca_file=ca_file, cert_file=cert, key_file=key, descriptor_file=descriptors, openapi_file=openapi,
        services=services, limits=request.limits,
    )
    config_file = out / "envoy.yaml"
    config_file.write_text(
        "# Generated by `vivified rest config` from the core's served services; do not edit.\n"
        + yaml.safe_dump(envoy_config(config), sort_keys=False)
    )
    shown = f"[{host}]" if ":" in host else host
    url = f"https://{shown}:{port}"
    return Bundle(config_file=config_file, url=url, openapi_url=url + OPENAPI_PATH, services=services,
                  certificate=cert, issued_by_core_ca=issued)


__all__ = ["DEFAULT_LISTEN", "Bundle", "BundleRequest", "split_address", "write_bundle"]
