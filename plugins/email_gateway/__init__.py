"""The email gateway plugin (`email-gateway`): sends email over SMTP through
the core's egress tunnel, from `SendMessage` calls, `MessageSendRequested`
events and `UserCreated` events (a welcome mail), and answers
`GetMessageStatus` from its own durable record.

Run it with `python -m vivified.plugins.email_gateway` (the `VIVIFIED_*`
variables of `vivified.sdk.PluginSettings.from_env` must be set, and
`VIVIFIED_PLUGIN_DATA_DIR` names its data directory; `vivified up` sets them).
Its SMTP settings come from the core's plugin configuration (see the manifest).
"""

from vivified.plugins.email_gateway._plugin import EmailGateway
from vivified.plugins.email_gateway._settings import SmtpSettings
from vivified.plugins.email_gateway._smtp import Mail, PermanentFailure, TemporaryFailure, compose
from vivified.plugins.email_gateway._store import EmailRecord, EmailStore

__all__ = [
    "EmailGateway",
    "EmailRecord",
    "EmailStore",
    "Mail",
    "PermanentFailure",
    "SmtpSettings",
    "TemporaryFailure",
    "compose",
]
