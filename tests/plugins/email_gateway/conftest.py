"""Fixtures for the email gateway tests: aiosmtpd on loopback (STARTTLS, AUTH)
and, per test, a `vivified.sdk.testing.LocalCore` (a real core process granting
the gateway exactly that address, its tester plugin) running the gateway as
its own process (see support/email_gateway.py)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from support.email_gateway import (
    GATEWAY_COMMAND,
    GatewayWorld,
    SmtpServer,
    bundled_manifest,
    gateway_core_options,
    smtp_config,
)
from vivified.sdk.testing import LocalCore


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path_factory.mktemp("smtp"))
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def world(smtp_server: SmtpServer, tmp_path: pathlib.Path) -> AsyncIterator[GatewayWorld]:
    """The gateway process configured for the SMTP server, under a LocalCore."""
    async with LocalCore(
        bundled_manifest(),
        None,
        tmp_path / "local",
        command=GATEWAY_COMMAND,
        config=smtp_config(smtp_server),
        options=gateway_core_options(tmp_path / "core-config", smtp_server),
    ) as local:
        yield GatewayWorld(local, smtp_server)
