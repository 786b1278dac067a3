"""J6: the protobuf handlers of the bootstrap port, fuzzed through a real core.

Mutated corpus seeds and random bytes are sent as the request message of
Register and every AuthService method (which anonymous callers may reach)
and of a few methods they may not, over real server-authenticated TLS, into
the real interceptor chain. Every call must end within 1 s with a refusal:
a request that decodes gets a domain refusal with an ErrorInfo reason and
exactly one audit record, never OK, UNKNOWN or INTERNAL; one that does not
decode as the request type is refused the same way (INVALID_ARGUMENT
`REQUEST_UNDECODABLE` once the chain has let the call through to decoding, or the
denial that came first), also with exactly one audit record. After the
run the core is alive, its memory grew by less than 64 MiB, its log has no
unexpected-error traceback, and a plugin still registers. The corpus in
tests/fuzz_corpus/bootstrap is replayed on every run.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given
from hypothesis import strategies as st

from support.clients import admitted_plugin, audit_rows, target_override
from support.fuzz import corpus, fuzz_settings, mutated
from support.processes import CoreProcess
from vivified.identity.v1 import auth_pb2 as auth
from vivified.registry.v1 import registry_pb2 as reg

pytestmark = [pytest.mark.e2e, pytest.mark.serial, pytest.mark.filterwarnings("ignore:Generating overly large repr")]

REGISTRY = "/vivified.registry.v1.PluginRegistryService/"
AUTH = "/vivified.identity.v1.AuthService/"
METHODS: dict[str, tuple[str, type[Message]]] = {
    "Register": (REGISTRY + "Register", reg.RegisterRequest),
    "RenewCertificate": (REGISTRY + "RenewCertificate", reg.RenewCertificateRequest),
    "Heartbeat": (REGISTRY + "Heartbeat", reg.HeartbeatRequest),
    "Deregister": (REGISTRY + "Deregister", reg.DeregisterRequest),
    "Login": (AUTH + "Login", auth.LoginRequest),
    "VerifyMfa": (AUTH + "VerifyMfa", auth.VerifyMfaRequest),
    "Refresh": (AUTH + "Refresh", auth.RefreshRequest),
    "Logout": (AUTH + "Logout", auth.LogoutRequest),
    "ChangePassword": (AUTH + "ChangePassword", auth.ChangePasswordRequest),
    "EnrollMfa": (AUTH + "EnrollMfa", auth.EnrollMfaRequest),
    "ConfirmMfa": (AUTH + "ConfirmMfa", auth.ConfirmMfaRequest),
}
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}
SEEDS = [(name.split(".", 1)[0], data) for name, data in corpus("bootstrap")]
PER_CALL_SECONDS = 1.0


def _rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError(f"no ErrorInfo on {err.code()}: {err.details()}")


class Caller:
    """Sends raw request bytes to one core; counts what must have been audited."""

    def __init__(self, core: CoreProcess) -> None:
        creds = grpc.ssl_channel_credentials(core.ca_pem)
        self.channel = grpc.secure_channel(core.bootstrap_address, creds, options=target_override(core))
        self.audited: dict[str, int] = {}

    def call(self, method: str, data: bytes) -> None:
        path, request_type = METHODS[method]
        try:
            request_type.FromString(data)
            decodes = True
        except DecodeError:
            decodes = False
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            self.channel.unary_unary(path)(data, timeout=10)
        elapsed = time.monotonic() - started
        err: Any = refused.value
        assert elapsed < PER_CALL_SECONDS, f"{method} took {elapsed:.2f} s"
        code = err.code()
        assert code in REFUSALS, f"{method}: {code} {err.details()}"
        reason = _reason(err)
        assert reason, f"{method}: {code} without a reason"
        if not decodes and code == grpc.StatusCode.INVALID_ARGUMENT:
            # Decoded only once authentication and policy let the call through.
            assert reason == "REQUEST_UNDECODABLE", f"{method}: {reason}"
        self.audited[path] = self.audited.get(path, 0) + 1


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@st.composite
def _well_formed(draw: st.DrawFn, method: str) -> bytes:
    """A request that decodes: a seed of the method (or an empty one) with its
    string and integer fields replaced by random values, so the handlers
    themselves see the input."""
    request_type = METHODS[method][1]
    seeds = [data for name, data in SEEDS if name == method]
    message = request_type()
    for data in seeds:
        try:
            message = request_type.FromString(data)
            break
        except DecodeError:
            continue
    for field in request_type.DESCRIPTOR.fields:
        if field.is_repeated or not draw(st.booleans()):
            continue
        if field.type == field.TYPE_STRING:
            setattr(message, field.name, draw(_TEXT))
        elif field.type in (field.TYPE_INT32, field.TYPE_SINT32):
            setattr(message, field.name, draw(st.integers(-(2**31), 2**31 - 1)))
    return message.SerializeToString()


def _audit_counts(core: CoreProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in audit_rows(core):
        counts[row.action] = counts.get(row.action, 0) + 1
    return counts


def test_j6_bootstrap_handlers_fuzz(core: CoreProcess) -> None:
    caller = Caller(core)
    audit_before = _audit_counts(core)
    try:
        for method, data in SEEDS:  # the corpus, replayed every run
            caller.call(method, data)
        # Measured from here: the corpus has warmed every path once (first-use
        # allocations: error paths, statement caches), so what follows is growth.
        rss_before = _rss_bytes(core.process.pid)

        raw = mutated([data for _, data in SEEDS], max_size=8192) | st.binary(max_size=512)

        @fuzz_settings(max_examples=250)
        @given(st.sampled_from(sorted(METHODS)).flatmap(lambda m: st.tuples(st.just(m), _well_formed(m) | raw)))
        def one(call: tuple[str, bytes]) -> None:
            caller.call(*call)

        one()
    finally:
        caller.channel.close()
    assert core.process.poll() is None, "the core died"
    grown = _rss_bytes(core.process.pid) - rss_before
    print(f"J6 bootstrap fuzz: the core's RSS grew by {grown / 2**20:.1f} MiB over {len(caller.audited)} methods")
    assert grown < 64 * 1024 * 1024, f"the core's memory grew by {grown} bytes"
    audit_after = _audit_counts(core)
    for path, count in caller.audited.items():
        # exactly one audit record for every call that reached the chain
        assert audit_after.get(path, 0) - audit_before.get(path, 0) == count, path
    assert "unexpected error" not in core.log()
    # the core still does its job: a plugin is approved and registers
    identity = asyncio.run(admitted_plugin(core, "after-fuzz"))
    assert identity.response.certificate_chain_pem
