"""The core's certificate authority and the SPIFFE identities it issues.

Public surface::

    CertificateAuthority  load_or_create / load; issue_plugin_certificate (from a CSR),
                          issue_core_certificate, issue_operator_certificate,
                          issue_rest_gateway_certificate (the REST bridge's listener)
    CAConfig, IssuedCertificate
    validate_csr          the CSR checks of docs/security.md I3
    new_private_key, write_private_key, load_private_key (mode 0600, docs/security.md K1)
    SPIFFE helpers        plugin_spiffe_id, core_spiffe_id, operator_spiffe_id,
                          parse_spiffe_id, plugin_dns_name, core_dns_name
    PeerCertificateParser identity of a verified TLS peer, cached per certificate
    begin_rotation, read_plan, RotationPlan, RotationStep
                          CA rotation with overlap (`_rotation.py`); the CA's
                          `advance` performs its steps, `trust_bundle_pem` is
                          what peers trust meanwhile
    CoreTLS               the core's listener credentials, swappable at run time

Errors (all `vivified.core.errors.VivifiedError`)::

    InvalidArgument  CSR_INVALID (vivified.registry), INVALID_REQUEST for bad names or keys
    Unauthenticated  IDENTITY_INVALID (vivified.auth) for a SPIFFE ID or peer cert not accepted
    KeyFileError     FailedPrecondition: KEY_FILE_INSECURE / _MISSING / _UNREADABLE / _INVALID
    CAError          FailedPrecondition: CA_INVALID / CA_INCOMPLETE / CA_EXPIRED / CA_NOT_YET_VALID
"""

from vivified.core.ca._authority import CertificateAuthority, RotationStep
from vivified.core.ca._config import CAConfig, IssuedCertificate
from vivified.core.ca._csr import MAX_CSR_PEM_BYTES, validate_csr
from vivified.core.ca._keyfiles import (
    KeyFileError,
    atomic_write,
    load_private_key,
    read_secure_file,
    write_private_key,
)
from vivified.core.ca._keys import SigningKey, SubjectPublicKey, new_private_key
from vivified.core.ca._material import CAError, load_certificate_file
from vivified.core.ca._peer import (
    PeerCertificate,
    PeerCertificateParser,
    identity_from_pem,
    svid_leaf_problem,
)
from vivified.core.ca._rotation import NEXT_DIR, PREVIOUS_ROOT, RotationPlan, begin_rotation, read_plan
from vivified.core.ca._serving import CoreTLS
from vivified.core.ca._spiffe import (
    SpiffeIdentity,
    core_dns_name,
    core_spiffe_id,
    operator_spiffe_id,
    parse_spiffe_id,
    plugin_dns_name,
    plugin_spiffe_id,
)

__all__ = [
    "NEXT_DIR",
    "PREVIOUS_ROOT",
    "load_certificate_file",
    "MAX_CSR_PEM_BYTES",
    "CAConfig",
    "CAError",
    "CertificateAuthority",
    "CoreTLS",
    "RotationPlan",
    "RotationStep",
    "begin_rotation",
    "read_plan",
    "IssuedCertificate",
    "KeyFileError",
    "PeerCertificate",
    "PeerCertificateParser",
    "SigningKey",
    "SpiffeIdentity",
    "SubjectPublicKey",
    "atomic_write",
    "core_dns_name",
    "core_spiffe_id",
    "identity_from_pem",
    "svid_leaf_problem",
    "load_private_key",
    "new_private_key",
    "operator_spiffe_id",
    "parse_spiffe_id",
    "plugin_dns_name",
    "plugin_spiffe_id",
    "read_secure_file",
    "validate_csr",
    "write_private_key",
]
