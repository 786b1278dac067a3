"""The development profile's local SMTP sink (`vivified up`): every message it
receives lands in `<data-dir>/outbox/<n>.eml`."""

from vivified.core.devsmtp._sink import SmtpSink

__all__ = ["SmtpSink"]
