"""Typed configuration of user authentication."""

from __future__ import annotations

from dataclasses import dataclass, field

# OWASP's minimum for Argon2id (m=19 MiB, t=2, p=1); the core refuses less.
MIN_MEMORY_KIB = 19456
MIN_ITERATIONS = 2
MIN_LANES = 1


@dataclass(frozen=True)
class PasswordParams:
    """Argon2id cost. Stored hashes with lower cost are re-hashed at the next
    successful login."""

    memory_kib: int = MIN_MEMORY_KIB
    """Memory cost in KiB."""
    iterations: int = MIN_ITERATIONS
    """Passes over memory."""
    lanes: int = MIN_LANES
    """Parallelism."""

    def __post_init__(self) -> None:
        if self.memory_kib < MIN_MEMORY_KIB or self.iterations < MIN_ITERATIONS or self.lanes < MIN_LANES:
            raise ValueError(
                f"Argon2id parameters below m={MIN_MEMORY_KIB}, t={MIN_ITERATIONS}, p={MIN_LANES} are refused"
            )


@dataclass(frozen=True)
class IdentityConfig:
    """Sessions, tokens, lockout and hashing of user sign-in."""

    issuer: str = "vivified-core"
    """`iss` of every token the core signs; verified exactly."""
    audience: str = "vivified-core"
    """`aud` of access and MFA tokens; verified exactly."""
    access_token_seconds: int = 900
    """Access token lifetime (15 minutes)."""
    mfa_token_seconds: int = 300
    """Lifetime of the MFA token between password and second factor."""
    delegation_token_seconds: int = 60
    """Lifetime of the delegation token the core gives a plugin acting for a
    user; each hop through the core gets a fresh one for its next target."""
    activation_token_seconds: int = 24 * 3600
    """How long an invited user's one-time activation token works (a day)."""
    leeway_seconds: int = 30
    """Clock skew tolerated on exp, nbf and iat."""
    session_idle_seconds: int = 900
    """A session unused this long ends (automatic logoff)."""
    session_absolute_seconds: int = 8 * 3600
    """A session ends this long after sign-in whatever its use."""
    revocation_check_seconds: float = 5.0
    """How long a session's state may be served from memory before it is
    re-read from the database. Revocations made by this core apply at once;
    ones made by another replica apply within this bound."""
    touch_seconds: float = 60.0
    """A session's (or API key's) last use is written to the database at most
    this often, so the idle timeout is measured to within this much."""
    lockout_threshold: int = 5
    """Wrong passwords before the account locks."""
    lockout_seconds: int = 1800
    """First lock's length (30 minutes); each further lock doubles it."""
    lockout_max_seconds: int = 24 * 3600
    """Longest lock: an attacker can delay a victim, never lock them out for good."""
    mfa_lockout_threshold: int = 5
    """Wrong MFA codes before MFA locks, counted apart from passwords."""
    mfa_lockout_seconds: int = 1800
    """First MFA lock's length; doubles like the password lock."""
    token_cache_size: int = 10_000
    """Verified access tokens kept in memory."""
    max_concurrent_hashes: int = 4
    """Argon2id computations at once (each takes memory_kib of memory)."""
    password: PasswordParams = field(default_factory=PasswordParams)
    """Argon2id cost for new hashes."""
    break_glass_seconds: int = 900
    """How long a session's break-glass activation lasts (15 minutes); then
    that session cannot break glass again."""

    def __post_init__(self) -> None:
        if not 60 <= self.access_token_seconds <= 3600:
            raise ValueError("access_token_seconds must be between 60 and 3600")
        if not 5 <= self.delegation_token_seconds <= 300:
            raise ValueError("delegation_token_seconds must be between 5 and 300")
        if not 300 <= self.activation_token_seconds <= 7 * 24 * 3600:
            raise ValueError("activation_token_seconds must be between 300 and 604800 (7 days)")
        if self.lockout_threshold < 1 or self.mfa_lockout_threshold < 1:
            raise ValueError("lockout thresholds must be at least 1")
        if not 0 <= self.leeway_seconds <= 120:
            raise ValueError("leeway_seconds must be between 0 and 120")
        if not 60 <= self.break_glass_seconds <= 3600:
            raise ValueError("break_glass_seconds must be between 60 and 3600")
        if self.session_idle_seconds <= 0 or self.session_absolute_seconds < self.session_idle_seconds:
            raise ValueError("session lifetimes must be positive, absolute >= idle")
