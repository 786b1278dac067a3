"""EventAdminService: operators list subscriptions and their dead letters,
replay dead letters to the one subscription they came from, and delete
subscriptions (with everything kept for them) a plugin no longer needs."""

from __future__ import annotations

import re
from typing import Any

import grpc

from vivified.admin.v1 import event_admin_pb2 as pb
from vivified.admin.v1 import event_admin_pb2_grpc
from vivified.core.chain import annotate
from vivified.core.classification import redact
from vivified.core.errors import InvalidArgument, NotFound
from vivified.core.events._envelope import DOMAIN, parse_payload
from vivified.core.events._store import EventStore
from vivified.events.v1.events_pb2 import Event

_SUBSCRIPTION = re.compile(r"[a-z][a-z0-9-]{1,62}/[a-z0-9][a-z0-9._-]{0,63}")
_DEFAULT_LIMIT, _MAX_LIMIT = 100, 1000
_MAX_REASON_LENGTH = 512

Context = grpc.aio.ServicerContext[Any, Any]


def _subscription(name: str) -> str:
    if not _SUBSCRIPTION.fullmatch(name):
        raise InvalidArgument(
            f"subscription {name[:200]!r} is not a full subscription name like 'email-gateway/welcome'",
            reason="SUBSCRIPTION_INVALID",
            domain=DOMAIN,
        )
    annotate(resource=f"subscription/{name}")
    return name


def _operator_view(data: bytes) -> Event:
    """The stored event with every classified payload field cleared."""
    event = Event.FromString(data)
    payload = parse_payload(event)
    if redact(payload, frozenset()):
        event.payload.Pack(payload)
    return event


class EventAdminService(event_admin_pb2_grpc.EventAdminServiceServicer):
    """Operator-facing view of the event store. Every call is audited by the chain."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Context
    ) -> pb.ListSubscriptionsResponse:
        lags = sorted(await self._store.lag(), key=lambda lag: lag.subscription)
        return pb.ListSubscriptionsResponse(
            subscriptions=[
                pb.SubscriptionInfo(
                    subscription=lag.subscription, pending=lag.pending, undelivered=lag.undelivered, lost=lag.lost
                )
                for lag in lags
            ]
        )

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Context) -> pb.ListDeadLettersResponse:
        subscription = _subscription(request.subscription)
        if request.limit < 0 or request.limit > _MAX_LIMIT:
            raise InvalidArgument(f"limit must be 0..{_MAX_LIMIT}", reason="INVALID_REQUEST", domain=DOMAIN)
        letters = await self._store.dead_letters(subscription, request.limit or _DEFAULT_LIMIT)
        response = pb.ListDeadLettersResponse()
        for letter in letters:
            entry = response.dead_letters.add(
                dead_letter_id=letter.dead_letter_id,
                reason=letter.reason,
                attempts=letter.attempts,
                event=_operator_view(letter.data),
                position=letter.position,
            )
            entry.dead_time.FromMilliseconds(letter.dead_at_ms)
        annotate(count=str(len(letters)))
        return response

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Context
    ) -> pb.ReplayDeadLettersResponse:
        subscription = _subscription(request.subscription)
        ids = list(request.dead_letter_ids)
        if len(ids) > _MAX_LIMIT:
            raise InvalidArgument(f"at most {_MAX_LIMIT} ids per replay", reason="INVALID_REQUEST", domain=DOMAIN)
        replayed = await self._store.replay(subscription, ids)
        annotate(replayed=str(replayed), requested="all" if not ids else str(len(ids)))
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: Context
    ) -> pb.DeleteSubscriptionResponse:
        subscription = _subscription(request.subscription)
        reason = request.reason.strip()
        if not reason or len(reason) > _MAX_REASON_LENGTH or not reason.isprintable():
            raise InvalidArgument(
                f"reason is required: 1 to {_MAX_REASON_LENGTH} printable characters",
                reason="INVALID_REQUEST",
                domain=DOMAIN,
            )
        annotate(change_reason=reason)
        # Open Subscribe streams of it, on this core or another sharing the
        # store, find it gone at their next read and end.
        if not await self._store.delete(subscription):
            raise NotFound(
                f"no subscription {subscription!r}; `vivified events subscriptions` lists them",
                reason="SUBSCRIPTION_NOT_FOUND",
                domain=DOMAIN,
            )
        return pb.DeleteSubscriptionResponse(subscription=subscription)
