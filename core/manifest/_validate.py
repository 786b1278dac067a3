"""The rules a parsed manifest must meet before an operator can approve it."""

from __future__ import annotations

import re
from collections.abc import Iterable

from vivified.core.canonical_events import CANONICAL_EVENT_TYPES
from vivified.core.contracts import CONTRACT_SERVICES, contract_method
from vivified.core.manifest._config_fields import check_config_schema
from vivified.core.manifest._credentials import check_injected_credentials
from vivified.core.manifest._digest import reject_unknown_fields
from vivified.core.manifest._domains import validate_allowed_domain
from vivified.core.manifest._problem import manifest_invalid, show
from vivified.core.manifest._tunnels import validate_tunnel
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.options.v1.options_pb2 import Classification

DEFAULT_CONTRACTS: frozenset[str] = frozenset(
    {
        "vivified.communication.v1.CommunicationPluginService",
        "vivified.storage.v1.StoragePluginService",
        "vivified.identity.v1.IdentityPluginService",
        "vivified.directory.v1.DirectoryService",
    }
)
# Ids the core or its principals use; a plugin named like them could be
# mistaken for them in SPIFFE ids, audit records or operator screens.
RESERVED_IDS = frozenset({"core", "operator", "admin", "system", "root", "vivified", "anonymous"})
MAX_NAME_LENGTH = 128
MAX_DESCRIPTION_LENGTH = 2048
MIN_PHI_RETENTION_DAYS = 2555  # HIPAA documentation retention: six years, rounded up to seven.

# [0-9] rather than \d: \d also matches non-ASCII digits such as U+0663.
_ID = re.compile(r"[a-z][a-z0-9-]{1,62}")
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(rf"{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE}(?:\.{_PRE})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")
_CONTRACT = re.compile(r"vivified\.[a-z][a-z0-9_]*\.v[1-9][0-9]*\.[A-Z][A-Za-z0-9]*Service")
_HIPAA_CONTROL = re.compile(r"164\.312\([a-e]\)(?:\([0-9]\))?(?:\([iv]+\))?")

_PHI = Classification.CLASSIFICATION_PHI
_PII = Classification.CLASSIFICATION_PII
_CONFIDENTIAL = Classification.CLASSIFICATION_CONFIDENTIAL
_KNOWN_CLASSES = Classification.DESCRIPTOR.values_by_number


def _no_duplicates(field: str, values: Iterable[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise manifest_invalid(f"{field}: {show(value)} is listed twice")
        seen.add(value)


def _check_id(plugin_id: str) -> None:
    if not plugin_id:
        raise manifest_invalid("id: required")
    if not _ID.fullmatch(plugin_id) or "--" in plugin_id or plugin_id.endswith("-"):
        raise manifest_invalid(
            f"id: {show(plugin_id)} must be 2-63 characters of a-z, 0-9 and '-', start with a "
            "letter, not end with '-' and not contain '--'"
        )
    if plugin_id in RESERVED_IDS:
        raise manifest_invalid(f"id: {plugin_id!r} is reserved")


def _check_text(manifest: PluginManifest) -> None:
    name = manifest.name
    if not name.strip():
        raise manifest_invalid("name: required")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise manifest_invalid(
            f"name: must be at most {MAX_NAME_LENGTH} printable characters (no control or bidi characters)"
        )
    if not manifest.version:
        raise manifest_invalid("version: required")
    if len(manifest.version) > MAX_NAME_LENGTH or not _SEMVER.fullmatch(manifest.version):
        raise manifest_invalid(
            f"version: {show(manifest.version)} is not a semantic version such as 1.2.0 or 1.2.0-rc.1"
        )
    text = manifest.description
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise manifest_invalid(f"description: longer than {MAX_DESCRIPTION_LENGTH} characters")
    if not all(ch.isprintable() or ch in "\n\t" for ch in text):
        raise manifest_invalid("description: contains control or bidi characters")


def _check_contracts(contracts: Iterable[str], known: frozenset[str], provides: Iterable[str]) -> None:
    listed = list(contracts)
    if not listed and list(provides):
        # A caller-only plugin (it only calls, publishes or subscribes) serves no contract and provides nothing.
        raise manifest_invalid(
            "contracts: a plugin that lists operations under provides must list the contracts they belong to"
        )
    _no_duplicates("contracts", listed)
    for contract in listed:
        if not _CONTRACT.fullmatch(contract):
            raise manifest_invalid(
                f"contracts: {show(contract)} is not a service name like vivified.<area>.v<N>.<Name>Service"
            )
        if contract not in known:
            raise manifest_invalid(
                f"contracts: {contract!r} is not a known contract; known: {', '.join(sorted(known))}"
            )


def _check_compliance(manifest: PluginManifest, traits: set[str]) -> None:
    compliance = manifest.compliance
    classes = list(compliance.data_classifications)
    for value in classes:
        if value not in _KNOWN_CLASSES or value == Classification.CLASSIFICATION_UNSPECIFIED:
            raise manifest_invalid(
                f"compliance.data_classifications: {value} is not a classification this core accepts"
            )
    _no_duplicates("compliance.data_classifications", (Classification.Name(v) for v in classes))
    for cls, trait in ((_PHI, "handles_phi"), (_PII, "handles_pii")):
        declared = cls in classes
        if declared != (trait in traits):
            have, lack = (Classification.Name(cls), trait) if declared else (trait, Classification.Name(cls))
            raise manifest_invalid(f"compliance: {have} is declared without {lack}; declare both or neither")
    if _CONFIDENTIAL in classes and "handles_confidential" not in traits:
        raise manifest_invalid("compliance: CLASSIFICATION_CONFIDENTIAL requires the handles_confidential trait")
    if _PHI in classes and "encryption_required" not in traits:
        raise manifest_invalid("compliance: CLASSIFICATION_PHI requires the encryption_required trait")
    controls = list(compliance.hipaa_controls)
    _no_duplicates("compliance.hipaa_controls", controls)
    for control in controls:
        if not _HIPAA_CONTROL.fullmatch(control):
            raise manifest_invalid(
                f"compliance.hipaa_controls: {show(control)} is not a 45 CFR 164.312 reference "
                "such as 164.312(a) or 164.312(a)(2)(iv)"
            )
    if compliance.retention_days < 0:
        raise manifest_invalid("compliance.retention_days: must not be negative")
    if "handles_phi" in traits:
        if not controls:
            raise manifest_invalid("compliance.hipaa_controls: required for a plugin with handles_phi")
        if compliance.retention_days < MIN_PHI_RETENTION_DAYS:
            raise manifest_invalid(
                f"compliance.retention_days: must be at least {MIN_PHI_RETENTION_DAYS} with handles_phi"
            )


def _check_security(manifest: PluginManifest, traits: set[str]) -> None:
    entries = list(manifest.security.allowed_domains)
    tunnels = list(manifest.security.allowed_tunnels)
    if "external_service" in traits and not entries and not tunnels:
        raise manifest_invalid(
            "security.allowed_domains: required for a plugin with external_service (or security.allowed_tunnels)"
        )
    if entries and "external_service" not in traits:
        raise manifest_invalid("security.allowed_domains: only a plugin with external_service may list domains")
    if tunnels and "external_service" not in traits:
        raise manifest_invalid("security.allowed_tunnels: only a plugin with external_service may list tunnels")
    _no_duplicates("security.allowed_domains", (validate_allowed_domain(e) for e in entries))
    _no_duplicates("security.allowed_tunnels", (validate_tunnel(e) for e in tunnels))


def _operation_problem(name: str) -> str | None:
    """Why `name` is not a unary contract operation (`pkg.Service/Method`), looked
    up in the generated descriptors of the contracts; None when it is one."""
    if contract_method(name) is not None and not name.startswith("/"):
        return None
    service_name, slash, method_name = name.partition("/")
    if not slash or not service_name or not method_name:
        return "it is not of the form pkg.Service/Method"
    service = CONTRACT_SERVICES.get(service_name)
    if service is None:
        return f"{show(service_name)} is not a plugin contract; contracts: {', '.join(sorted(CONTRACT_SERVICES))}"
    method = service.methods_by_name.get(method_name)
    if method is None:
        have = ", ".join(m.name for m in service.methods)
        return f"{service_name} has no method {show(method_name)} (it has {have})"
    return f"{service_name}/{method_name} is a streaming method; only unary operations go through the core"


def _check_operations(manifest: PluginManifest) -> None:
    contracts = set(manifest.contracts)
    provides = list(manifest.provides)
    _no_duplicates("provides", provides)
    for index, name in enumerate(provides):
        entry = {"field": f"provides[{index}]", "entry": name[:200]}
        problem = _operation_problem(name)
        if problem is not None:
            raise manifest_invalid(
                f"provides: {show(name)} is not a contract operation like "
                f"vivified.communication.v1.CommunicationPluginService/SendMessage: {problem}",
                **entry,
            )
        method = contract_method(name)
        if method is not None and method.service not in contracts:
            raise manifest_invalid(f"provides: {name} belongs to {method.service}, which is not in contracts", **entry)
    seen: set[tuple[str, str]] = set()
    for index, call in enumerate(manifest.calls):
        where = f"calls[{index}]"
        if not _ID.fullmatch(call.plugin_id) or call.plugin_id in RESERVED_IDS:
            raise manifest_invalid(f"{where}.plugin_id: {show(call.plugin_id)} is not a plugin id")
        if call.plugin_id == manifest.id:
            raise manifest_invalid(f"{where}: a plugin does not call itself through the core")
        problem = _operation_problem(call.method)
        if problem is not None:
            raise manifest_invalid(
                f"{where}.method: {show(call.method)} is not a known contract operation: {problem}",
                field=f"{where}.method",
                entry=call.method[:200],
            )
        if (call.plugin_id, call.method) in seen:
            raise manifest_invalid(f"{where}: {call.plugin_id} {call.method} is listed twice")
        seen.add((call.plugin_id, call.method))


def _check_events(manifest: PluginManifest) -> None:
    for field in ("publishes", "subscribes"):
        listed = list(getattr(manifest, field))
        _no_duplicates(field, listed)
        for index, event_type in enumerate(listed):
            if event_type not in CANONICAL_EVENT_TYPES:
                raise manifest_invalid(
                    f"{field}: {show(event_type)} is not a canonical event type (exact name, no wildcards); "
                    f"known: {', '.join(sorted(CANONICAL_EVENT_TYPES))}",
                    field=f"{field}[{index}]",
                    entry=event_type[:200],
                )


def _check_ports(manifest: PluginManifest) -> None:
    ports = list(manifest.security.allowed_ports)
    _no_duplicates("security.allowed_ports", ports)
    for port in ports:
        if not 0 < port < 65536:
            raise manifest_invalid(f"security.allowed_ports: {port} is not a TCP port")
    if ports and not manifest.security.allowed_domains:
        raise manifest_invalid("security.allowed_ports: only meaningful with allowed_domains")


def validate_manifest(
    manifest: PluginManifest,
    catalogue: TraitCatalogue,
    *,
    known_contracts: frozenset[str] = DEFAULT_CONTRACTS,
) -> None:
    """Raise InvalidArgument(reason="MANIFEST_INVALID") for the first rule the manifest breaks."""
    reject_unknown_fields(manifest)
    _check_id(manifest.id)
    _check_text(manifest)
    _check_contracts(manifest.contracts, known_contracts, manifest.provides)
    traits = list(manifest.traits)
    _no_duplicates("traits", traits)
    catalogue.check_plugin_traits(traits)
    _check_compliance(manifest, set(traits))
    _check_security(manifest, set(traits))
    _check_ports(manifest)
    _check_operations(manifest)
    _check_events(manifest)
    check_config_schema(manifest)
    check_injected_credentials(manifest)
