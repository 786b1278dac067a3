"""`EmailGateway`: the communication plugin that sends real email.

Three ways in, one way out:

- `SendMessage` (operator lane): queued, `EmailQueued` published, one attempt
  at once; a temporary failure is retried in the background with backoff
  until `max_attempts`.
- `MessageSendRequested` and `UserCreated` (event bus; the latter sends a
  welcome mail): one attempt per delivery, after a backoff on redeliveries;
  a temporary failure raises, so the SDK nacks and the bus redelivers; on the
  last attempt `EmailFailed` is published first, then the bus dead-letters.
- A permanent failure is final at once: `EmailFailed` with the server's code.

Mail leaves by the configured `transport`, read at each attempt (so a config
change applies to the next one): SMTP through the core's tunnel (`_smtp`), or
a JSON email API through the core's egress fetch (`_api`), whose credential
only the core holds.

Every delivered mail is kept, as sent (RFC 822, classified PII), in the
core's encrypted object store under `sent/<email id>.eml` (`archive`), so an
operator can prove what went out; the archive is best effort after delivery
(a failure is logged, never a reason to send again).

`EmailSent`/`EmailFailed` carry event ids derived from the email id, so a
redelivered event does not publish twice. Logs carry email ids and SMTP
codes only: never an address, a subject, a body or the password."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc
from vivified.directory.v1 import directory_pb2
from vivified.events.v1.canonical_pb2 import (
    EmailFailed,
    EmailQueued,
    EmailSent,
    MessageSendRequested,
    UserCreated,
)
from vivified.plugins.email_gateway._api import Fetch, send_api
from vivified.plugins.email_gateway._settings import DEFAULT_ACTIVATION_URL, SettingsProblem, SmtpSettings
from vivified.plugins.email_gateway._smtp import (
    Connect,
    DeliveryFailure,
    Mail,
    PermanentFailure,
    TemporaryFailure,
    compose,
    send,
)
from vivified.plugins.email_gateway._store import (
    DELIVERED,
    FAILED,
    PROCESSING,
    QUEUED,
    EmailRecord,
    EmailStore,
)
from vivified.plugins.email_gateway._welcome import Lookup, welcome_mail
from vivified.sdk import PluginConfig, ReceivedEvent, VivifiedSDKError, abort

_log = logging.getLogger("vivified.plugins.email_gateway")
_DOMAIN = "vivified.communication"
MAX_MESSAGE_ID = 256
CORE_SOURCE = "core"
_STATUS = {
    QUEUED: pb.DELIVERY_STATUS_QUEUED,
    PROCESSING: pb.DELIVERY_STATUS_PROCESSING,
    DELIVERED: pb.DELIVERY_STATUS_DELIVERED,
    FAILED: pb.DELIVERY_STATUS_FAILED,
}
# The directory cannot answer yet: down, slow, or not past the same UserCreated.
_LOOKUP_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.NOT_FOUND})
Publish = Callable[[Message, str], Awaitable[object]]
"""(event payload, event id) -> published (`runtime.publish`)."""
Archive = Callable[[str, bytes], Awaitable[object]]
"""(object name, RFC 822 bytes) -> stored (`runtime.storage.put`, classified PII)."""


def archive_name(email_id: str) -> str:
    """The object name a delivered mail is kept under (object names allow
    letters, digits and ._~- only, so anything else in the id becomes `_`)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._~-") else "_" for c in email_id)
    return f"sent/{safe or '_'}.eml"


class EmailGateway(communication_pb2_grpc.CommunicationPluginServiceServicer):
    """Example (see `__main__` for the whole process)::

    gateway = EmailGateway(EmailStore(path), connect=runtime_connect, publish=runtime_publish)
    gateway.configure(await runtime.config())
    """

    def __init__(
        self,
        store: EmailStore,
        *,
        connect: Connect,
        publish: Publish,
        lookup: Lookup | None = None,
        fetch: Fetch | None = None,
        archive: Archive | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._archive = archive
        self._connect = connect
        self._fetch = fetch
        self._publish = publish
        self._lookup = lookup
        self._sleep = sleep
        self._settings: SmtpSettings | None = None
        self._problem = "not configured yet"
        self._retries: set[asyncio.Task[None]] = set()

    # -- configuration -----------------------------------------------------

    def configure(self, config: PluginConfig) -> None:
        """Apply a configuration (now, and after each change: `watch_config`)."""
        try:
            self._settings = SmtpSettings.from_config(config, config.missing_keys)
        except (SettingsProblem, ValueError, KeyError) as exc:
            self._settings, self._problem = None, str(exc)
            _log.warning("email gateway not usable: %s", exc)
            return
        if self._settings.transport == "api":
            _log.info("email gateway configured: transport api")
            return
        _log.info(
            "email gateway configured: %s:%d, tls %s, auth %s",
            self._settings.host,
            self._settings.port,
            self._settings.tls,
            "on" if self._settings.username else "off",
        )

    def _current(self) -> SmtpSettings:
        if self._settings is None:
            raise TemporaryFailure("NOT_CONFIGURED", self._problem)
        return self._settings

    # -- delivery ----------------------------------------------------------

    async def _attempt(self, mail: Mail) -> str:
        """One SMTP attempt; records the outcome of a success or permanent failure."""
        self._store.update(mail.email_id, PROCESSING, attempted=True)
        try:
            settings = self._current()
            if settings.transport == "api":
                if self._fetch is None:
                    raise PermanentFailure("API_UNAVAILABLE", "this gateway was built without egress fetch")
                provider_id = await send_api(self._fetch, settings, mail)
            else:
                provider_id = await send(self._connect, settings, mail)
        except PermanentFailure as failure:
            await self._failed(mail, failure)
            raise
        except TemporaryFailure as failure:
            _log.warning("email %s: temporary failure %s", mail.email_id, failure.code)
            self._store.update(mail.email_id, QUEUED, detail=failure.message, error_code=failure.code)
            raise
        self._store.update(mail.email_id, DELIVERED, provider_message_id=provider_id)
        await self._keep(mail, settings)
        await self._publish(
            EmailSent(
                email_id=mail.email_id, recipient=mail.to_address, provider_message_id=provider_id, user_id=mail.user_id
            ),
            f"{mail.email_id}:sent",
        )
        _log.info("email %s delivered", mail.email_id)
        return provider_id

    async def _keep(self, mail: Mail, settings: SmtpSettings) -> None:
        if self._archive is None:
            return
        try:
            await self._archive(archive_name(mail.email_id), bytes(compose(mail, settings.sender)))
        except (VivifiedSDKError, grpc.aio.AioRpcError) as exc:
            _log.warning("email %s delivered but not archived: %s", mail.email_id, getattr(exc, "reason", exc))

    async def _failed(self, mail: Mail, failure: DeliveryFailure) -> None:
        self._store.update(mail.email_id, FAILED, detail=failure.message, error_code=failure.code)
        await self._publish(
            EmailFailed(
                email_id=mail.email_id,
                recipient=mail.to_address,
                error_code=failure.code,
                error_message=failure.message,
                user_id=mail.user_id,
            ),
            f"{mail.email_id}:failed",
        )
        _log.warning("email %s failed: %s", mail.email_id, failure.code)

    async def _queue(self, mail: Mail, origin: str, template: str = "", message_id: str = "") -> EmailRecord | None:
        """Record `mail` as queued and publish EmailQueued; the earlier record
        instead when this email id is known already."""
        record, created = self._store.queue(mail.email_id, origin)
        if not created:
            return record
        await self._publish(
            EmailQueued(email_id=mail.email_id, recipient=mail.to_address, template=template, message_id=message_id),
            f"{mail.email_id}:queued",
        )
        return None

    async def _retry(self, mail: Mail) -> None:
        attempt = 2
        while True:
            settings = self._settings
            limit = settings.max_attempts if settings else 5
            await self._sleep(settings.backoff(attempt) if settings else 1.0)
            try:
                await self._attempt(mail)
                return
            except PermanentFailure:
                return
            except TemporaryFailure as failure:
                if attempt >= limit:
                    await self._failed(mail, failure)
                    return
            attempt += 1

    async def _handle_event(
        self, mail: Mail, event: ReceivedEvent, origin: str, template: str, message_id: str, *, backed_off: bool = False
    ) -> None:
        earlier = await self._queue(mail, origin, template, message_id)
        if earlier is not None and earlier.status in (DELIVERED, FAILED):
            return  # a redelivery of a finished event
        settings = self._settings
        if event.attempt > 1 and settings is not None and not backed_off:
            await self._sleep(settings.backoff(event.attempt))
        try:
            await self._attempt(mail)
        except PermanentFailure:
            return  # EmailFailed published; acknowledged, never retried
        except TemporaryFailure as failure:
            limit = settings.max_attempts if settings else 5
            if event.attempt >= limit:
                await self._failed(mail, failure)
            raise  # nack: the bus redelivers, or dead-letters after its last attempt

    # -- event handlers ----------------------------------------------------

    async def on_message_send_requested(self, payload: Message, event: ReceivedEvent) -> None:
        if not isinstance(payload, MessageSendRequested):
            raise TypeError("expected MessageSendRequested")
        email_id = payload.message_id or event.event.event_id
        mail = Mail(email_id, payload.recipient, payload.subject, payload.body)
        if {"recipient", "body"} & set(event.redacted_fields) or not payload.recipient:
            earlier = await self._queue(mail, "event", payload.template, payload.message_id)
            if earlier is None or earlier.status != FAILED:
                code = "CONTENT_REDACTED" if payload.recipient else "NO_RECIPIENT"
                await self._failed(
                    mail, PermanentFailure(code, "the event reached this plugin without recipient or body")
                )
            return
        await self._handle_event(mail, event, "event", payload.template, payload.message_id)

    async def on_user_created(self, payload: Message, event: ReceivedEvent) -> None:
        if not isinstance(payload, UserCreated):
            raise TypeError("expected UserCreated")
        if event.event.source_plugin_id != CORE_SOURCE:
            # A welcome mail carries an activation link: only people the core announces get one.
            _log.warning(
                "ignoring UserCreated %s from %r: only the core announces users",
                event.event.event_id,
                event.event.source_plugin_id,
            )
            return
        if not payload.email or "email" in event.redacted_fields:
            _log.info("user %s has no email address this plugin may see; no welcome mail", payload.user_id)
            return
        earlier = self._store.get(f"welcome-{payload.user_id}")
        if earlier is not None and earlier.status in (DELIVERED, FAILED):
            return  # a redelivery of a welcome already sent (or given up)
        settings = self._settings
        if event.attempt > 1 and settings is not None:
            await self._sleep(settings.backoff(event.attempt))
        profile = await self._profile(payload.user_id, event.attempt)
        mail = welcome_mail(payload, profile, settings.activation_url if settings else DEFAULT_ACTIVATION_URL)
        await self._handle_event(mail, event, "welcome", "welcome", "", backed_off=True)

    async def _profile(self, user_id: str, attempt: int) -> directory_pb2.Profile | None:
        """The directory's profile of `user_id`; raises (nack) while the directory
        cannot answer, except on the last attempt, which sends unpersonalised."""
        if self._lookup is None:
            return None
        limit = self._settings.max_attempts if self._settings else 5
        try:
            return await self._lookup(user_id)
        except VivifiedSDKError as exc:
            if exc.code not in _LOOKUP_RETRY:
                # Refused (e.g. POLICY_DENIED): the mail goes out unpersonalised rather than never.
                _log.warning(
                    "directory refused the profile of %s (%s); welcome mail from the event alone", user_id, exc.reason
                )
                return None
            if attempt >= limit:
                _log.warning(
                    "directory still cannot answer for %s (%s); welcome mail from the event alone", user_id, exc.reason
                )
                return None
            _log.warning("directory cannot answer for %s yet (%s); asking for redelivery", user_id, exc.reason)
            raise

    # -- contract ----------------------------------------------------------

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SendMessageResponse:
        message = request.message
        missing = [name for name in ("message_id", "to_address", "content") if not getattr(message, name)]
        if missing:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"message.{', message.'.join(missing)} required",
                reason="INVALID_REQUEST",
                domain=_DOMAIN,
            )
        if len(message.message_id) > MAX_MESSAGE_ID:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"message.message_id longer than {MAX_MESSAGE_ID} characters",
                reason="INVALID_REQUEST",
                domain=_DOMAIN,
            )
        if self._settings is None:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the email gateway is {self._problem}",
                reason="NOT_CONFIGURED",
                domain=_DOMAIN,
            )
        mail = Mail(
            message.message_id,
            message.to_address,
            message.subject,
            message.content,
            message.content_type or "text/plain",
        )
        earlier = await self._queue(mail, "operator", message_id=message.message_id)
        if earlier is not None:
            # A reused message id: the status of the earlier send, not a second mail.
            return pb.SendMessageResponse(message_id=message.message_id, status=_STATUS[earlier.status])
        try:
            await self._attempt(mail)
        except PermanentFailure:
            return pb.SendMessageResponse(message_id=message.message_id, status=pb.DELIVERY_STATUS_FAILED)
        except TemporaryFailure:
            task = asyncio.ensure_future(self._retry(mail))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return pb.SendMessageResponse(message_id=message.message_id, status=pb.DELIVERY_STATUS_QUEUED)
        return pb.SendMessageResponse(message_id=message.message_id, status=pb.DELIVERY_STATUS_DELIVERED)

    async def GetMessageStatus(
        self, request: pb.GetMessageStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMessageStatusResponse:
        record = self._store.get(request.message_id)
        if record is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "no message with this id was sent to this plugin",
                reason="MESSAGE_NOT_FOUND",
                domain=_DOMAIN,
            )
            raise AssertionError("unreachable")  # abort raises
        update_time = timestamp_pb2.Timestamp()
        update_time.FromDatetime(record.updated_at)
        detail = f"{record.error_code}: {record.detail}" if record.error_code else record.detail
        return pb.GetMessageStatusResponse(
            message_id=record.email_id, status=_STATUS[record.status], status_detail=detail, update_time=update_time
        )

    async def close(self) -> None:
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        # Operator-lane sends still waiting for a retry lose their content with the process:
        # say so in the durable record rather than leave them queued forever.
        for email_id in self._store.unfinished("operator"):
            self._store.update(
                email_id, FAILED, detail="the plugin stopped before a retry could deliver it", error_code="INTERRUPTED"
            )
