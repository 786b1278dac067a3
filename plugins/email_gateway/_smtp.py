"""Compose a mail with the stdlib `email` package and send it with aiosmtplib
over a tunnel through the core (the plugin has no network of its own).

TLS: `auto` upgrades with STARTTLS whenever the server offers it, `starttls`
requires it, `tls` speaks TLS from the first byte, `none` never (a local
development sink). The certificate is verified against the host name by the
plugin itself: the core only moves bytes. SMTP AUTH is sent only over TLS,
unless the mode is `none`.

Failures are typed: `PermanentFailure` (a 5xx reply, a refused tunnel, a
certificate that does not verify) is not retried; `TemporaryFailure` (4xx,
connection lost, server down, timeouts) is retried with backoff. Neither
carries the password: aiosmtplib's errors hold the server's reply only.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from vivified.plugins.email_gateway._settings import SmtpSettings
from vivified.sdk import PermissionDeniedError, Tunnel, VivifiedSDKError

Connect = Callable[[str, int, float], Awaitable[Tunnel]]
"""(host, port, timeout seconds) -> an open tunnel (`runtime.connect`)."""


class DeliveryFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PermanentFailure(DeliveryFailure):
    """Sending again will fail the same way."""


class TemporaryFailure(DeliveryFailure):
    """Worth retrying later."""


@dataclass(frozen=True)
class Mail:
    """One message to send. Addresses and content are classified: never log them."""

    email_id: str
    to_address: str
    subject: str
    body: str
    content_type: str = "text/plain"
    user_id: str = ""
    """The person the mail is about (a welcome mail), named in EmailSent/EmailFailed."""


def compose(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2] or "vivified.local"
    message["Message-ID"] = email.utils.make_msgid(idstring=mail.email_id.replace("@", "_")[:64], domain=domain)
    message["X-Vivified-Email-Id"] = mail.email_id
    subtype = "html" if mail.content_type == "text/html" else "plain"
    message.set_content(mail.body, subtype=subtype)
    return message


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.ca_pem:
        context.load_verify_locations(cadata=settings.ca_pem)
    return context


def _from_reply(code: int, text: str) -> DeliveryFailure:
    kind = PermanentFailure if code >= 500 else TemporaryFailure
    return kind(str(code), text.strip()[:200])


async def _session(settings: SmtpSettings, tunnel: Tunnel, message: EmailMessage) -> str:
    context = _tls_context(settings)
    smtp = aiosmtplib.SMTP(
        hostname=settings.host,
        sock=await tunnel.socket(),
        use_tls=settings.tls == "tls",
        start_tls=False,
        tls_context=context,
        local_hostname=settings.sender.rpartition("@")[2] or "localhost",
        timeout=settings.timeout_seconds,
    )
    await smtp.connect()
    try:
        await smtp.ehlo()
        secure = settings.tls == "tls"
        if settings.tls in ("auto", "starttls") and smtp.supports_extension("starttls"):
            await smtp.starttls(tls_context=context)
            secure = True
        elif settings.tls == "starttls":
            raise PermanentFailure("STARTTLS_UNAVAILABLE", "the server does not offer STARTTLS")
        if settings.username:
            if not secure and settings.tls != "none":
                raise PermanentFailure("AUTH_WITHOUT_TLS", "refusing to send the SMTP password without TLS")
            await smtp.login(settings.username, settings.password)
        refused, reply = await smtp.send_message(message)
        if refused:
            code, text = next(iter(refused.values()))
            raise _from_reply(code, text)
        await smtp.quit()
        return reply
    finally:
        smtp.close()


async def send(connect: Connect, settings: SmtpSettings, mail: Mail) -> str:
    """Send `mail`; returns its Message-ID. Raises PermanentFailure or TemporaryFailure."""
    message = compose(mail, settings.sender)
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            tunnel = await connect(settings.host, settings.port, settings.timeout_seconds)
            try:
                await _session(settings, tunnel, message)
            finally:
                await tunnel.close()
    except DeliveryFailure:
        raise
    except PermissionDeniedError as exc:
        raise PermanentFailure(exc.reason or "EGRESS_DENIED", exc.message) from None
    except VivifiedSDKError as exc:
        raise TemporaryFailure(exc.reason or "TUNNEL_FAILED", exc.message) from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        raise _from_reply(first.code, first.message) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise _from_reply(exc.code, exc.message) from None
    except ssl.SSLCertVerificationError as exc:
        raise PermanentFailure("TLS_VERIFY_FAILED", exc.verify_message or "certificate does not verify") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TemporaryFailure("CONNECTION_FAILED", type(exc).__name__) from None
    return str(message["Message-ID"])
