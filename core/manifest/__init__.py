"""Plugin manifests: parse (YAML or JSON), validate, and digest.

    >>> from vivified.core.traits import TraitCatalogue
    >>> manifest = load_manifest_file("plugins/email/manifest.yaml")
    >>> validate_manifest(manifest, TraitCatalogue.load_default())
    >>> approved_digest = manifest_sha256(manifest)

Every problem raises `vivified.core.errors.InvalidArgument` with reason
`MANIFEST_INVALID` and domain `vivified.registry`, and a message that names
the key and what is wrong with it.
"""

from vivified.core.manifest._config_fields import (
    MAX_VALUE_LENGTH,
    check_config_schema,
    type_name,
    value_problem,
)
from vivified.core.manifest._credentials import injected_config_keys
from vivified.core.manifest._digest import (
    canonical_json,
    manifest_sha256,
    reject_unknown_fields,
)
from vivified.core.manifest._domains import validate_allowed_domain
from vivified.core.manifest._load import (
    MAX_MANIFEST_BYTES,
    REQUIRED_KEYS,
    load_manifest_bytes,
    load_manifest_file,
)
from vivified.core.manifest._tunnels import validate_tunnel
from vivified.core.manifest._validate import (
    DEFAULT_CONTRACTS,
    MIN_PHI_RETENTION_DAYS,
    RESERVED_IDS,
    validate_manifest,
)
from vivified.core.manifest._yaml import MAX_DEPTH, MAX_NODES

__all__ = [
    "DEFAULT_CONTRACTS",
    "MAX_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_NODES",
    "MAX_VALUE_LENGTH",
    "MIN_PHI_RETENTION_DAYS",
    "REQUIRED_KEYS",
    "RESERVED_IDS",
    "canonical_json",
    "check_config_schema",
    "injected_config_keys",
    "load_manifest_bytes",
    "load_manifest_file",
    "manifest_sha256",
    "reject_unknown_fields",
    "type_name",
    "validate_allowed_domain",
    "validate_manifest",
    "validate_tunnel",
    "value_problem",
]
