"""`EchoCommunicationPlugin`: a communication plugin that delivers nothing.

Every valid message is recorded as DELIVERED at once. The plugin keeps only
each message's id, status and time (never addresses, subject or body) and
logs only the id and the subject's length, since the contract classifies
addresses as PII and subject and body as confidential."""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc
from vivified.sdk import abort

_log = logging.getLogger("vivified.plugins.example_echo")
_DOMAIN = "vivified.communication"
MAX_MESSAGE_ID = 256


@dataclass(frozen=True)
class _Status:
    status: pb.DeliveryStatus.ValueType
    update_time: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EchoCommunicationPlugin(communication_pb2_grpc.CommunicationPluginServiceServicer):
    """Accepts messages and reports them delivered; a reused `message_id`
    returns the earlier status instead of sending again.

    Example::

        from vivified.sdk import PluginSettings, run
        run([EchoCommunicationPlugin()], PluginSettings.from_env(os.environ))
    """

    def __init__(self, *, clock: Callable[[], dt.datetime] = _utcnow, max_messages: int = 10_000) -> None:
        self._clock = clock
        self._max = max_messages
        # Oldest first; bounded so a long-running plugin's memory stays flat.
        self._statuses: OrderedDict[str, _Status] = OrderedDict()

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
        earlier = self._statuses.get(message.message_id)
        if earlier is not None:
            _log.info("message %r sent again; returning its earlier status", message.message_id)
            return pb.SendMessageResponse(message_id=message.message_id, status=earlier.status)
        self._statuses[message.message_id] = _Status(pb.DELIVERY_STATUS_DELIVERED, self._clock())
        while len(self._statuses) > self._max:
            self._statuses.popitem(last=False)
        _log.info("delivered message %r (subject %d characters)", message.message_id, len(message.subject))
        return pb.SendMessageResponse(message_id=message.message_id, status=pb.DELIVERY_STATUS_DELIVERED)

    async def GetMessageStatus(
        self, request: pb.GetMessageStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMessageStatusResponse:
        known = self._statuses.get(request.message_id)
        if known is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "no message with this id was sent to this plugin",
                reason="MESSAGE_NOT_FOUND",
                domain=_DOMAIN,
            )
        update_time = timestamp_pb2.Timestamp()
        update_time.FromDatetime(known.update_time)
        return pb.GetMessageStatusResponse(message_id=request.message_id, status=known.status, update_time=update_time)
