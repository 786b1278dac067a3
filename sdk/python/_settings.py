"""How a plugin finds and trusts its core: one frozen dataclass, read from the
environment once, at the edge (`PluginSettings.from_env`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vivified.sdk._errors import ConfigurationError

DEFAULT_CORE_ADDRESS = "127.0.0.1:7443"
DEFAULT_BOOTSTRAP_ADDRESS = "127.0.0.1:7444"
DEFAULT_TRUST_DOMAIN = "vivified.local"


@dataclass(frozen=True, kw_only=True)
class PluginSettings:
    """Where the core is, how to trust it, and how the plugin serves.

    Example::

        settings = PluginSettings(
            manifest_path=Path("plugins/example_echo/manifest.yaml"),
            join_token=token,
            ca_file=Path(".vivified/operator/ca.crt"),
        )
    """

    manifest_path: Path
    """The plugin's manifest (YAML or JSON); must be the one the operator approved."""
    join_token: str = field(default="", repr=False)
    """The one-time token printed by `vivified plugins approve`. Kept out of `repr` so it is never logged.
    May be empty when `data_dir` is set: the plugin then only resumes the registration whose key and
    certificate it stored there (after a crash), and fails to start when there is none."""
    ca_file: Path
    """PEM root certificate of the core's CA: the only root the plugin trusts, both to
    verify the core's server certificate and to verify the core when it calls the plugin."""
    core_address: str = DEFAULT_CORE_ADDRESS
    """The core's mTLS port (`host:port`): heartbeats, renewal, deregistration."""
    bootstrap_address: str = DEFAULT_BOOTSTRAP_ADDRESS
    """The core's bootstrap port (`host:port`), server-authenticated TLS, used once for `Register`."""
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    """SPIFFE trust domain. The core must present the name `core.<trust_domain>`."""
    listen_host: str = "127.0.0.1"
    """Interface the plugin's own server binds to; the port is chosen by the OS."""
    advertise_host: str | None = None
    """Host the core should dial to reach the plugin, when it differs from `listen_host`
    (for example `listen_host="0.0.0.0"` inside a container). Defaults to `listen_host`."""
    listen_socket: Path | None = None
    """Serve on this Unix socket instead of a TCP port (a sandboxed plugin, which has no
    network: `VIVIFIED_LISTEN_SOCKET`, set by the supervisor); the endpoint sent to the
    core is then `unix:<listen_socket>`. mTLS runs over it as over TCP."""
    renew_at_fraction: float = 0.66
    """Renew the certificate once this fraction of its lifetime has passed (0 < f < 1)."""
    shutdown_grace_seconds: float = 5.0
    """How long in-flight calls may run on after a stop is requested."""
    connect_timeout_seconds: float = 10.0
    """Deadline of each call the SDK makes to the core (`Register`, heartbeats, renewal)."""
    data_dir: Path | None = None
    """The plugin's own directory for durable state (e.g. its SQLite file); None when
    the plugin keeps nothing. Use `require_data_dir()` to get it or a clear error.
    The SDK keeps the plugin's key and certificate there (`vivified-identity.json`,
    mode 0600), so a process restarted after a crash resumes without a new join token."""
    conformance_control: str = ""
    log_format: str = "text"
    """`text`: `run` leaves logging as the plugin set it up; `json`: `run` writes one JSON object per line."""
    """The conformance suite's control file (`VIVIFIED_CONFORMANCE_CONTROL`); "" (the default) turns the
    hook off. Set only by the suite: see docs/plugin-protocol.md, "Conformance control hook"."""

    def __post_init__(self) -> None:
        if not self.join_token and self.data_dir is None:
            raise ConfigurationError("join_token is empty (and no data_dir could hold a registration to resume)")
        if not 0.0 < self.renew_at_fraction < 1.0:
            raise ConfigurationError(f"renew_at_fraction must be between 0 and 1, got {self.renew_at_fraction}")
        if self.shutdown_grace_seconds < 0 or self.connect_timeout_seconds <= 0:
            raise ConfigurationError("shutdown_grace_seconds must be >= 0 and connect_timeout_seconds > 0")
        for name in ("core_address", "bootstrap_address", "trust_domain", "listen_host"):
            if not getattr(self, name):
                raise ConfigurationError(f"{name} is empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PluginSettings:
        """Settings from `VIVIFIED_*` variables, read once at the plugin's edge.

        Required: `VIVIFIED_MANIFEST`, `VIVIFIED_CA_FILE`, and `VIVIFIED_JOIN_TOKEN` unless
        `VIVIFIED_DATA_DIR` is set (a restart then resumes from the identity stored there).
        Optional: `VIVIFIED_CORE_ADDRESS`, `VIVIFIED_BOOTSTRAP_ADDRESS`, `VIVIFIED_TRUST_DOMAIN`,
        `VIVIFIED_DATA_DIR` (the plugin's own state directory), `VIVIFIED_LISTEN_HOST` (the
        interface the plugin serves on, e.g. `0.0.0.0` in a container),
        `VIVIFIED_ADVERTISE_HOST` (the host the core dials, e.g. the pod IP or the service name),
        `VIVIFIED_LISTEN_SOCKET` (serve on this Unix socket instead: a sandboxed plugin)
        `VIVIFIED_CONFORMANCE_CONTROL` (the conformance suite's control file) and
        `VIVIFIED_LOG_FORMAT` (`text` or `json`: one JSON object per log line).
        Change anything else with `dataclasses.replace`.

        Example::

            settings = PluginSettings.from_env(os.environ)
        """

        def required(variable: str, what: str) -> str:
            value = environ.get(variable, "")
            if not value:
                raise ConfigurationError(
                    f"environment variable {variable} is not set (it gives {what})", reason="SETTING_MISSING"
                )
            return value

        def optional(variable: str, default: str) -> str:
            return environ.get(variable) or default

        return cls(
            manifest_path=Path(required("VIVIFIED_MANIFEST", "the path of the plugin's manifest")),
            # Optional with a data dir: a restarted plugin resumes from the identity stored there.
            join_token=environ.get("VIVIFIED_JOIN_TOKEN", "")
            if environ.get("VIVIFIED_DATA_DIR")
            else required("VIVIFIED_JOIN_TOKEN", "the one-time join token from `vivified plugins approve`"),
            ca_file=Path(required("VIVIFIED_CA_FILE", "the path of the core's root CA certificate")),
            core_address=optional("VIVIFIED_CORE_ADDRESS", DEFAULT_CORE_ADDRESS),
            bootstrap_address=optional("VIVIFIED_BOOTSTRAP_ADDRESS", DEFAULT_BOOTSTRAP_ADDRESS),
            trust_domain=optional("VIVIFIED_TRUST_DOMAIN", DEFAULT_TRUST_DOMAIN),
            data_dir=Path(environ["VIVIFIED_DATA_DIR"]) if environ.get("VIVIFIED_DATA_DIR") else None,
            conformance_control=environ.get("VIVIFIED_CONFORMANCE_CONTROL", ""),
            listen_host=optional("VIVIFIED_LISTEN_HOST", "127.0.0.1"),
            listen_socket=Path(environ["VIVIFIED_LISTEN_SOCKET"]) if environ.get("VIVIFIED_LISTEN_SOCKET") else None,
            advertise_host=environ.get("VIVIFIED_ADVERTISE_HOST") or None,
            log_format=log_format(optional("VIVIFIED_LOG_FORMAT", "text")),
        )

    def require_data_dir(self) -> Path:
        """The plugin's state directory, created (mode 0700) if missing; raises
        `ConfigurationError` (SETTING_MISSING) when none is configured.

        Example::

            store = sqlite3.connect(settings.require_data_dir() / "profiles.db")
        """
        if self.data_dir is None:
            raise ConfigurationError(
                "this plugin keeps state: set VIVIFIED_DATA_DIR (or PluginSettings.data_dir) to its own directory",
                reason="SETTING_MISSING",
            )
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.data_dir

    @property
    def dial_host(self) -> str:
        """The host part of the endpoint sent to the core."""
        return self.advertise_host or self.listen_host


def log_format(value: str) -> str:
    """`text` or `json`; anything else is a ConfigurationError."""
    if value not in ("text", "json"):
        raise ConfigurationError(
            f"VIVIFIED_LOG_FORMAT must be text or json, not {value[:40]!r}", reason="SETTING_INVALID"
        )
    return value
