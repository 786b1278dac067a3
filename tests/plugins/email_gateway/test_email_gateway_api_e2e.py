"""The email gateway's second transport, end to end: a JSON email API over
HTTPS through `EgressProxyService.Fetch`, its key injected by the core from a
secret config value the plugin cannot read (`security.injected_credentials`).
Real core process and the real gateway process (run by
`vivified.sdk.testing.LocalCore`), a local HTTPS API on loopback
(reached as `mail-api.example.com` through the core's egress `resolve` table
and an allow range for loopback; the core trusts the test CA by SSL_CERT_FILE),
and an in-process probe plugin that shows the credential rules on the wire."""

from __future__ import annotations

import asyncio
import json
import pathlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
import yaml

from support.clients import audit_rows, operator_channel
from support.email_gateway import (
    GATEWAY,
    GATEWAY_COMMAND,
    SENDER,
    GatewayWorld,
    SmtpServer,
    bundled_manifest,
    config_grpc,
    gateway_core_options,
    smtp_config,
)
from support.lane import RecordingStore, started_plugin, write_manifest
from support.mail_api import MAIL_API_HOST, OTHER_HOST, MailApi, mail_api_tls
from support.processes import CoreProcess
from support.waiting import until
from vivified.config.v1 import config_pb2
from vivified.core.audit import audit_table
from vivified.core.db import create_engine_for, sqlite_url
from vivified.egress.v1.egress_pb2 import FetchRequest, HttpHeader
from vivified.events.v1.canonical_pb2 import EmailFailed, EmailSent, MessageSendRequested
from vivified.sdk import FailedPreconditionError, PluginRuntime
from vivified.sdk.testing import LocalCore

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]
API_KEY = "CANARY-mail-api-key-7f3c2a91"
FETCH = "/vivified.egress.v1.EgressProxyService/Fetch"
MASK = "********"


@pytest.fixture(scope="module")
def api_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, pathlib.Path]:
    directory = tmp_path_factory.mktemp("mail-api-tls")
    context, ca_pem = mail_api_tls(directory)
    ca_file = directory / "ca.pem"
    ca_file.write_text(ca_pem)
    return context, ca_file


def egress_for_api() -> dict[str, Any]:
    """The API host (and a second one) resolve to loopback, which an allow range admits."""
    return {"allow_ranges": ["127.0.0.1/32"], "resolve": {MAIL_API_HOST: ["127.0.0.1"], OTHER_HOST: ["127.0.0.1"]}}


@pytest_asyncio.fixture
async def api(api_tls: tuple[Any, pathlib.Path]) -> AsyncIterator[MailApi]:
    server = await MailApi(api_tls[0]).start()
    yield server
    await server.stop()


def edited_manifest(directory: pathlib.Path, port: int) -> pathlib.Path:
    """The bundled manifest as an operator edits it for this API: its port."""
    data = yaml.safe_load(bundled_manifest().read_text())
    assert data["security"]["allowed_domains"] == [MAIL_API_HOST]
    data["security"]["allowed_ports"] = [port]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "email-gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest_asyncio.fixture
async def world(
    smtp_server: SmtpServer, api: MailApi, api_tls: tuple[Any, pathlib.Path], tmp_path: pathlib.Path
) -> AsyncIterator[GatewayWorld]:
    """The gateway process sending over SMTP, with the API configured beside it, under a LocalCore."""
    config = {
        **smtp_config(smtp_server),
        "transport": "smtp",
        "api_url": f"https://{MAIL_API_HOST}:{api.port}/v3/send",
        "api_key": API_KEY,
    }
    options = gateway_core_options(
        tmp_path / "core-config", smtp_server, egress_for_api(), core_env={"SSL_CERT_FILE": str(api_tls[1])}
    )
    async with LocalCore(
        edited_manifest(tmp_path / "manifest", api.port),
        None,
        tmp_path / "local",
        command=GATEWAY_COMMAND,
        config=config,
        options=options,
    ) as local:
        yield GatewayWorld(local, smtp_server)


async def use_api(world: GatewayWorld) -> None:
    """Switch the running gateway to the API (followed live) and wait until it applied it."""
    await world.set_config("transport", "api")
    await until(
        lambda: "configured: transport api" in world.plugin_log.read_text(errors="replace"),
        20,
        "the gateway to follow transport=api",
    )


async def request_mail(world: GatewayWorld, message_id: str, recipient: str = "ada@example.com") -> None:
    await world.caller.publish(
        MessageSendRequested(
            message_id=message_id,
            recipient=recipient,
            subject="Lab results",
            body="All clear.\n",
            template="plain",
        )
    )


def everything_audited(core: CoreProcess) -> str:
    engine = create_engine_for(sqlite_url(core.data_dir / "vivified.db"))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_table)).all()
    engine.dispose()
    return "\n".join(repr(tuple(r)) for r in rows)


async def test_api_transport_sends_with_the_core_injected_key_the_plugin_never_sees(
    world: GatewayWorld, api: MailApi
) -> None:
    # SMTP first; then the live switch to the API sends the next mail there, and SMTP gets nothing more.
    first = f"smtp-{uuid.uuid4().hex[:8]}"
    await request_mail(world, first)
    await until(lambda: world.observer.of(EmailSent, first), 20, "EmailSent over SMTP")
    assert len(world.smtp.recorder.by_id(first)) == 1 and api.requests == []
    await use_api(world)
    before = len(audit_rows(world.core, action=FETCH, actor=f"plugin:{GATEWAY}"))
    message_id = f"api-{uuid.uuid4().hex[:8]}"
    await request_mail(world, message_id)
    [sent] = await until(lambda: world.observer.of(EmailSent, message_id), 20, "EmailSent over the API")
    assert world.smtp.recorder.by_id(message_id) == []
    [request] = api.requests
    assert (request.method, request.path) == ("POST", "/v3/send")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"  # added by the core
    assert request.headers["content-type"] == "application/json" and request.headers["idempotency-key"] == message_id
    assert request.body == {
        "message_id": message_id,
        "from": SENDER,
        "to": ["ada@example.com"],
        "subject": "Lab results",
        "text": "All clear.\n",
    }
    assert sent.provider_message_id == "api-1"
    # One audit record of the fetch: host, status, the credential named by header only.
    rows = audit_rows(world.core, action=FETCH, actor=f"plugin:{GATEWAY}")[before:]
    assert [(r.decision, r.outcome) for r in rows] == [("allow", "OK")]
    facts = json.loads(rows[0].detail)
    assert (facts["host"], facts["status"], facts["credential"]) == (MAIL_API_HOST, "200", "Authorization")
    # The key is nowhere but on the wire to the API: not in the audit log, the core's or the plugin's logs.
    assert API_KEY not in everything_audited(world.core)
    assert API_KEY not in world.plugin_log.read_text(errors="replace")
    assert API_KEY not in world.core.log()


async def test_api_answers_are_typed_temporary_retried_permanent_failed(world: GatewayWorld, api: MailApi) -> None:
    await use_api(world)
    # 503 then 200: a temporary failure, nacked; the bus redelivers and the retry is sent.
    retried = f"tmp-{uuid.uuid4().hex[:8]}"
    api.statuses[:] = [503]
    await request_mail(world, retried)
    await until(lambda: world.observer.of(EmailSent, retried), 30, "EmailSent after the redelivery")
    assert [r.body["message_id"] for r in api.requests] == [retried, retried]
    assert world.observer.of(EmailFailed, retried) == []
    # 422: permanent at once, EmailFailed with the status as code, not retried.
    rejected = f"perm-{uuid.uuid4().hex[:8]}"
    api.statuses[:] = [422]
    await request_mail(world, rejected, "nobody@example.com")
    [failed] = await until(lambda: world.observer.of(EmailFailed, rejected), 20, "EmailFailed")
    assert failed.error_code == "HTTP_422"
    await asyncio.sleep(1.0)
    assert [r.body["message_id"] for r in api.requests].count(rejected) == 1
    assert world.observer.of(EmailSent, rejected) == []


def probe_manifest(directory: pathlib.Path, port: int) -> pathlib.Path:
    return write_manifest(
        directory,
        "api-probe",
        traits=["storage_plugin", "external_service"],
        security={
            "allowed_domains": [MAIL_API_HOST, OTHER_HOST],
            "allowed_ports": [port],
            "injected_credentials": [{"host": MAIL_API_HOST, "header": "X-Api-Key", "config_key": "api_key"}],
        },
        config=[
            {"name": "api_key", "type": "CONFIG_FIELD_TYPE_SECRET"},
            {"name": "other_secret", "type": "CONFIG_FIELD_TYPE_SECRET"},
        ],
    )


async def test_injected_credential_rules_on_the_wire(world: GatewayWorld, api: MailApi, tmp_path: pathlib.Path) -> None:
    api_core = world.core
    probe: PluginRuntime = await started_plugin(api_core, probe_manifest(tmp_path, api.port), [RecordingStore()])
    url = f"https://{MAIL_API_HOST}:{api.port}"
    try:
        # Unset: the fetch is refused before anything is sent (FAILED_PRECONDITION, one audit record).
        with pytest.raises(FailedPreconditionError) as unset:
            await probe.fetch(FetchRequest(method="GET", url=f"{url}/ping"), timeout=10)
        assert unset.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert unset.value.reason == "EGRESS_CREDENTIAL_UNSET" and "api_key" in unset.value.message
        rows = audit_rows(api_core, action=FETCH, actor="plugin:api-probe")
        assert [(r.reason, r.outcome) for r in rows] == [("EGRESS_CREDENTIAL_UNSET", "FAILED_PRECONDITION")]
        assert api.requests == []

        async with operator_channel(api_core) as channel:
            for key, value in (("api_key", API_KEY), ("other_secret", "readable-by-its-owner")):
                await config_grpc(channel).SetPluginConfigValue(
                    config_pb2.SetPluginConfigValueRequest(plugin_id="api-probe", key=key, value=value, reason="probe"),
                    timeout=10,
                )
        # The owner's own config view: its other secret in clear, the injected one masked.
        config = await probe.config(timeout=10)
        assert config["other_secret"] == "readable-by-its-owner" and config["api_key"] == MASK

        # A header of that name sent by the plugin is replaced by the core's.
        reply = await probe.fetch(
            FetchRequest(
                method="GET", url=f"{url}/ping", headers=[HttpHeader(name="x-api-key", value="forged-by-the-plugin")]
            ),
            timeout=10,
        )
        assert reply.status_code == 200
        assert api.requests[-1].headers["x-api-key"] == API_KEY
        # A redirect to another (allowlisted) host does not carry it; the exact host only.
        api.redirects["/hop"] = f"https://{OTHER_HOST}:{api.port}/landed"
        reply = await probe.fetch(FetchRequest(method="GET", url=f"{url}/hop"), timeout=10)
        assert reply.status_code == 200
        hop, landed = api.requests[-2:]
        assert hop.path == "/hop" and hop.headers["x-api-key"] == API_KEY
        assert landed.path == "/landed" and "x-api-key" not in landed.headers
        reply = await probe.fetch(FetchRequest(method="GET", url=f"https://{OTHER_HOST}:{api.port}/direct"), timeout=10)
        assert "x-api-key" not in api.requests[-1].headers
        assert API_KEY not in everything_audited(api_core)
    finally:
        await probe.stop("test over")
