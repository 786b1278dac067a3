"""Which keys the CA accepts, and how it signs with them.

Accepted subject keys: EC P-256 and P-384, Ed25519, RSA of 2048 to 8192 bits.
Other curves (secp256k1, brainpool, …) are refused because TLS peers do not
negotiate them; RSA below 2048 bits is breakable; RSA above 8192 bits only
slows every handshake the core makes.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

SubjectPublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

_ALLOWED_CURVES = ("secp256r1", "secp384r1")
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key, the platform's default key type."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_problem(key: PublicKeyTypes) -> str | None:
    """Why `key` is not acceptable as a certificate subject key, or None if it is."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _ALLOWED_CURVES:
            return f"EC curve {key.curve.name} is not supported (use P-256 or P-384)"
        return None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits is too small (minimum {_MIN_RSA_BITS})"
        if key.key_size > _MAX_RSA_BITS:
            return f"RSA key of {key.key_size} bits is too large (maximum {_MAX_RSA_BITS})"
        return None
    return f"key type {type(key).__name__} is not supported (use EC P-256/P-384, Ed25519 or RSA)"


def as_subject_key(key: PublicKeyTypes) -> SubjectPublicKey | None:
    """`key` narrowed to a supported subject key type, or None when it is refused."""
    if public_key_problem(key) is not None:
        return None
    if isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
        return key
    return None


def signature_hash(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The digest to sign with `key`: none for Ed25519, SHA-384 for P-384, else SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()
