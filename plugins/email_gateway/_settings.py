"""The gateway's settings, read from the core's plugin configuration
(`runtime.config()` / `watch_config()`), never from the environment.

`transport` picks how mail leaves: `smtp` (through the core's tunnel) or
`api` (a JSON email API over HTTPS through the core's egress fetch; its
credential, config key `api_key`, is added by the core and never readable here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TLS_MODES = ("auto", "starttls", "tls", "none")
TRANSPORTS = ("smtp", "api")
DEFAULT_ACTIVATION_URL = "https://vivified.local/activate?token={token}"


class SettingsProblem(Exception):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send. `password` is kept out of `repr`."""

    host: str
    port: int
    sender: str
    username: str = ""
    password: str = field(default="", repr=False)
    tls: str = "auto"
    ca_pem: str = field(default="", repr=False)
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    retry_backoff_seconds: float = 1.0
    activation_url: str = DEFAULT_ACTIVATION_URL
    """The welcome mail's activation link; `{token}` becomes the activation token."""
    transport: str = "smtp"
    """`smtp` or `api`."""
    api_url: str = ""
    """The JSON email API's endpoint (https) in `api` mode."""

    @classmethod
    def from_config(cls, config: Mapping[str, str], missing: tuple[str, ...] = ()) -> SmtpSettings:
        """Settings from a `PluginConfig`; SettingsProblem naming the first bad key."""
        if missing:
            raise SettingsProblem(f"not configured yet: {', '.join(missing)}")
        transport = config.get("transport", "smtp")
        if transport not in TRANSPORTS:
            raise SettingsProblem(f"transport must be one of {', '.join(TRANSPORTS)}")
        api_url = config.get("api_url", "")
        if transport == "api" and not api_url.startswith("https://"):
            raise SettingsProblem("api_url must be an https URL when transport is api")
        if transport == "smtp" and not config.get("smtp_host"):
            raise SettingsProblem("not configured yet: smtp_host")
        tls = config.get("smtp_tls", "auto")
        if tls not in TLS_MODES:
            raise SettingsProblem(f"smtp_tls must be one of {', '.join(TLS_MODES)}")
        if config.get("smtp_username") and not config.get("smtp_password"):
            raise SettingsProblem("smtp_username is set without smtp_password")

        def positive(key: str, default: str) -> int:
            value = int(config.get(key, default))
            if value < 1:
                raise SettingsProblem(f"{key} must be at least 1")
            return value

        port = positive("smtp_port", "587")
        if port > 65535:
            raise SettingsProblem("smtp_port must be 1-65535")
        activation_url = config.get("activation_url") or DEFAULT_ACTIVATION_URL
        if activation_url.count("{token}") != 1 or not activation_url.startswith(("https://", "http://")):
            raise SettingsProblem("activation_url must be an http(s) URL containing {token} once")
        return cls(
            activation_url=activation_url,
            transport=transport,
            api_url=api_url,
            host=config.get("smtp_host", ""),
            port=port,
            sender=config["smtp_sender"],
            username=config.get("smtp_username", ""),
            password=config.get("smtp_password", ""),
            tls=tls,
            ca_pem=config.get("smtp_ca_pem", ""),
            timeout_seconds=float(positive("smtp_timeout_seconds", "30")),
            max_attempts=positive("max_attempts", "5"),
            retry_backoff_seconds=positive("retry_backoff_ms", "1000") / 1000,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2, 3, ...)."""
        return 0.0 if attempt < 2 else min(self.retry_backoff_seconds * 2 ** (attempt - 2), 60.0)
