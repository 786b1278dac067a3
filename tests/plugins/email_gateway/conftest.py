"""Fixtures for the email gateway tests: aiosmtpd on loopback (STARTTLS, AUTH),
a core granting the gateway exactly that address, the gateway process, and a
caller plugin (see support/email_gateway.py)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator, Iterator
from importlib import resources

import pytest
import pytest_asyncio
from support.clients import approve
from support.email_gateway import (
    COMMUNICATION,
    GATEWAY,
    MAX_ATTEMPTS,
    PASSWORD,
    SENDER,
    USERNAME,
    GatewayWorld,
    Observer,
    SmtpServer,
)
from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, start_core, stop_process
from vivified.core.manifest import load_manifest_file
from vivified.events.v1.canonical_pb2 import EmailFailed, EmailQueued, EmailSent


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path_factory.mktemp("smtp"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway_core(tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer) -> Iterator[CoreProcess]:
    """A core granting email-gateway a tunnel to exactly the SMTP server's address."""
    base = tmp_path_factory.mktemp("gateway-core")
    egress = base / "egress.json"
    egress.write_text(json.dumps(
        {"tunnel_grants": [{"plugin_id": GATEWAY, "host": "127.0.0.1", "port": smtp_server.port}]}
    ))
    core = start_core(base / "data", "--heartbeat-interval", "1", "--egress-config", str(egress),
                      "--event-max-attempts", str(MAX_ATTEMPTS))
    yield core
    stop_process(core.process)


@pytest_asyncio.fixture
async def world(gateway_core: CoreProcess, smtp_server: SmtpServer, tmp_path: pathlib.Path) -> AsyncIterator[GatewayWorld]:
    """The gateway process (configured for the SMTP server) and a caller plugin."""
    observer = Observer()
    caller_manifest = write_manifest(
        tmp_path, "mail-caller",
        calls=[{"plugin_id": GATEWAY, "method": f"{COMMUNICATION}/SendMessage"},
               {"plugin_id": GATEWAY, "method": f"{COMMUNICATION}/GetMessageStatus"}],
        publishes=["vivified.events.v1.MessageSendRequested", "vivified.events.v1.UserCreated"],
        subscribes=["vivified.events.v1.EmailQueued", "vivified.events.v1.EmailSent", "vivified.events.v1.EmailFailed"],
    )
    world = GatewayWorld(gateway_core, smtp_server, None, observer, tmp_path / "gateway.log",  # type: ignore[arg-type]
                         tmp_path / "gateway-data", tmp_path)
    manifest = load_manifest_file(pathlib.Path(str(resources.files("vivified.plugins.email_gateway") / "manifest.yaml")))
    await approve(gateway_core, manifest, replace=True)
    for key, value in (("smtp_host", "127.0.0.1"), ("smtp_port", str(smtp_server.port)), ("smtp_sender", SENDER),
                       ("smtp_username", USERNAME), ("smtp_password", PASSWORD), ("smtp_tls", "starttls"),
                       ("smtp_ca_pem", smtp_server.ca_pem), ("max_attempts", str(MAX_ATTEMPTS)),
                       ("retry_backoff_ms", "50"), ("smtp_timeout_seconds", "10")):
        await world.set_config(key, value)
    await world.start_gateway()
    world.caller = await started_plugin(gateway_core, caller_manifest, [RecordingStore()])
    subscription = world.caller.subscribe(
        "mail-observer", {EmailQueued: observer.record, EmailSent: observer.record, EmailFailed: observer.record}
    )
    await subscription.opened()
    try:
        yield world
    finally:
        await world.caller.stop()
        world.stop_gateway()
        await asyncio.sleep(0)
