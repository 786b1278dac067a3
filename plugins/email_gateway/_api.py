"""Send a mail to a JSON email API over HTTPS, through the core's egress
fetch (`runtime.fetch`): the plugin has no network of its own, and the API
key is added by the core (`security.injected_credentials`), never seen here.

The request: `POST <api_url>` with `Content-Type: application/json`,
`Idempotency-Key: <email id>` and the body
`{"message_id", "from", "to": [address], "subject", "text" | "html"}`.
A 2xx answer is delivery; its JSON `id`, when present, is the provider's
message id (else the email id). Failures are typed like SMTP's: 408, 429 and
5xx are `TemporaryFailure` (retried with backoff, the event nacked), any
other answer is `PermanentFailure` with code `HTTP_<status>`. Neither carries
the response body: only the status."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from vivified.egress.v1.egress_pb2 import FetchRequest, FetchResponse, HttpHeader
from vivified.plugins.email_gateway._settings import SmtpSettings
from vivified.plugins.email_gateway._smtp import Mail, PermanentFailure, TemporaryFailure
from vivified.sdk import FailedPreconditionError, PermissionDeniedError, VivifiedSDKError

Fetch = Callable[[FetchRequest, float], Awaitable[FetchResponse]]
"""(request, timeout seconds) -> the answer (`runtime.fetch`)."""
_RETRIED = frozenset({408, 425, 429})


def api_request(settings: SmtpSettings, mail: Mail) -> FetchRequest:
    content = "html" if mail.content_type == "text/html" else "text"
    body = {
        "message_id": mail.email_id,
        "from": settings.sender,
        "to": [mail.to_address],
        "subject": mail.subject,
        content: mail.body,
    }
    return FetchRequest(
        method="POST",
        url=settings.api_url,
        headers=[
            HttpHeader(name="Content-Type", value="application/json"),
            HttpHeader(name="Idempotency-Key", value=mail.email_id[:200]),
        ],
        body=json.dumps(body).encode(),
    )


def _provider_id(reply: FetchResponse, email_id: str) -> str:
    try:
        answer = json.loads(reply.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return email_id
    found = answer.get("id") if isinstance(answer, dict) else None
    return found if isinstance(found, str) and found and len(found) <= 256 else email_id


async def send_api(fetch: Fetch, settings: SmtpSettings, mail: Mail) -> str:
    """Send `mail`; returns the provider's message id. Raises PermanentFailure or TemporaryFailure."""
    try:
        reply = await fetch(api_request(settings, mail), settings.timeout_seconds)
    except PermissionDeniedError as exc:
        raise PermanentFailure(exc.reason or "EGRESS_DENIED", exc.message) from None
    except FailedPreconditionError as exc:
        # e.g. EGRESS_CREDENTIAL_UNSET: an administrator has not set api_key yet.
        raise TemporaryFailure(exc.reason or "FAILED_PRECONDITION", exc.message) from None
    except VivifiedSDKError as exc:
        raise TemporaryFailure(exc.reason or "FETCH_FAILED", exc.message) from None
    status = reply.status_code
    if 200 <= status < 300:
        return _provider_id(reply, mail.email_id)
    kind = TemporaryFailure if status >= 500 or status in _RETRIED else PermanentFailure
    raise kind(f"HTTP_{status}", f"the email API answered {status}")
