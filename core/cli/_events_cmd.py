"""`vivified events subscriptions [delete]` and `vivified events dlq list|replay` against a running core."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from vivified.admin.v1 import event_admin_pb2 as pb
from vivified.admin.v1 import event_admin_pb2_grpc
from vivified.core.cli._client import core_target, data_dir, describe, open_channel

# A dead letter's payload is an Any holding a canonical event: json_format prints it only with
# the event types in the descriptor pool, which importing their module puts there.
from vivified.events.v1 import canonical_pb2  # noqa: F401


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser(
        "events",
        help="inspect event subscriptions and dead letters on a running core",
        description="Inspect event bus subscriptions and their dead-letter stores; replay dead letters; "
        "delete subscriptions. Every call is audited.",
    )
    events.add_argument("--data-dir", help="core data dir holding the operator certificate (default ./.vivified)")
    events.add_argument(
        "--core",
        metavar="HOST:PORT",
        help="core mTLS address, or the bootstrap port with VIVIFIED_API_KEY (default: from the data dir)",
    )
    events.add_argument("--json", action="store_true", help="print JSON")
    verbs = events.add_subparsers(dest="verb", required=True)
    subscriptions = verbs.add_parser(
        "subscriptions", help="every subscription with its backlog (pending, undelivered, lost); or delete one"
    )
    subscription_verbs = subscriptions.add_subparsers(dest="subscriptions_verb")
    delete = subscription_verbs.add_parser(
        "delete", help="remove a subscription with its cursor, pending deliveries and dead letters; its streams end"
    )
    delete.add_argument("subscription", help="full name, <plugin-id>/<name>")
    delete.add_argument("--reason", required=True, help="why; recorded in the audit log")
    dlq = verbs.add_parser("dlq", help="a subscription's dead letters")
    dlq_verbs = dlq.add_subparsers(dest="dlq_verb", required=True)
    listing = dlq_verbs.add_parser("list", help="list dead letters, oldest first")
    listing.add_argument("subscription", help="full name, <plugin-id>/<name>")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 1000)")
    replay = dlq_verbs.add_parser("replay", help="deliver dead letters again to their subscription only")
    replay.add_argument("subscription", help="full name, <plugin-id>/<name>")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", action="append", metavar="DEAD_LETTER_ID", help="replay this one")
    which.add_argument("--all", action="store_true", help="replay every dead letter of the subscription")


async def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    target = core_target(data_dir(args, environ), environ, args.core)
    async with open_channel(target) as channel:
        stub = event_admin_pb2_grpc.EventAdminServiceStub(channel)
        try:
            reply: Message
            if args.verb == "subscriptions" and args.subscriptions_verb == "delete":
                reply = await stub.DeleteSubscription(
                    pb.DeleteSubscriptionRequest(subscription=args.subscription, reason=args.reason), timeout=30
                )
            elif args.verb == "subscriptions":
                reply = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=30)
            elif args.dlq_verb == "list":
                reply = await stub.ListDeadLetters(
                    pb.ListDeadLettersRequest(subscription=args.subscription, limit=args.limit), timeout=30
                )
            else:
                reply = await stub.ReplayDeadLetters(
                    pb.ReplayDeadLettersRequest(subscription=args.subscription, dead_letter_ids=args.ids or []),
                    timeout=30,
                )
        except grpc.aio.AioRpcError as err:
            raise describe(err) from None
    out.extend(_render(args, reply))
    return 0


def _render(args: argparse.Namespace, reply: Message) -> list[str]:
    if args.json:
        return [json_format.MessageToJson(reply, preserving_proto_field_name=True)]
    if isinstance(reply, pb.ListSubscriptionsResponse):
        rows = [f"{'SUBSCRIPTION':48} {'PENDING':>8} {'UNDELIVERED':>12} {'LOST':>6}"]
        for s in reply.subscriptions:
            rows.append(f"{s.subscription:48} {s.pending:>8} {s.undelivered:>12} {s.lost:>6}")
        return rows
    if isinstance(reply, pb.ListDeadLettersResponse):
        rows = [f"{'DEAD_LETTER_ID':40} {'EVENT_TYPE':36} {'EVENT_ID':24} {'ATTEMPTS':>8} REASON"]
        for d in reply.dead_letters:
            rows.append(
                f"{d.dead_letter_id:40} {d.event.event_type:36} {d.event.event_id:24} {d.attempts:>8} {d.reason}"
            )
        return rows
    if isinstance(reply, pb.DeleteSubscriptionResponse):
        return [f"deleted subscription {reply.subscription}"]
    if isinstance(reply, pb.ReplayDeadLettersResponse):
        return [f"replayed {reply.replayed} dead letter(s) to {args.subscription}"]
    raise TypeError(f"unexpected reply {type(reply).__name__}")
