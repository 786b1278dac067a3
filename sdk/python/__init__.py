"""The Vivified plugin SDK.

A plugin is a class that subclasses the generated servicer of its contract.
The SDK registers it with the core (one-time join token, fresh key, CSR),
serves it over mutual TLS accepting only the core's certificate, answers the
core's `Init`/`Shutdown` and `grpc.health.v1` checks, heartbeats, renews its
certificate before expiry without a restart, and stops gracefully.

Example (a complete plugin process)::

    import os
    from vivified.communication.v1 import communication_pb2, communication_pb2_grpc
    from vivified.sdk import PluginSettings, run

    class Echo(communication_pb2_grpc.CommunicationPluginServiceServicer):
        async def SendMessage(self, request, context):
            return communication_pb2.SendMessageResponse(
                message_id=request.message.message_id,
                status=communication_pb2.DELIVERY_STATUS_DELIVERED,
            )

    run([Echo()], PluginSettings.from_env(os.environ))

Servicers get their runtime: pass a factory instead of a list and it receives
the `PluginRuntime`; a servicer's `async def on_init(self, runtime)` runs when
the core calls Init. Handlers then call other plugins, publish, subscribe,
fetch and read config (each must be declared in the approved manifest:
`calls`, `publishes`, `subscribes`, `security.allowed_domains`, `config`)::

    from vivified.directory.v1.directory_pb2 import GetProfileRequest
    from vivified.events.v1.canonical_pb2 import EmailSent, UserCreated

    class Mailer(communication_pb2_grpc.CommunicationPluginServiceServicer):
        def __init__(self, runtime):
            self.runtime = runtime

        async def on_init(self, runtime):
            self.sender = (await runtime.config()).get("sender")          # config
            runtime.subscribe("welcome", {UserCreated: self.on_user})     # subscribe

        async def on_user(self, event, received):
            profile = await self.runtime.call(                            # call
                "user-management", GetProfileRequest(user_id=event.user_id))
            ...
            await self.runtime.publish(EmailSent(email_id="e-1", user_id=event.user_id))  # publish

    run(lambda runtime: [Mailer(runtime)], PluginSettings.from_env(os.environ))

`PluginRuntime` is the same machinery for code that owns its event loop
(tests, or a plugin that runs other tasks beside its server). Every error is
a `VivifiedSDKError` subclass carrying the core's `reason` and `domain`.
"""

from vivified.sdk._calls import PluginCaller, delegation_of, target_metadata
from vivified.sdk._config import PluginConfig
from vivified.sdk._errors import (
    ConfigurationError,
    CoreUntrustedError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    VivifiedSDKError,
    from_rpc_error,
)
from vivified.sdk._events import PublishStream, ReceivedEvent, Subscription, envelope
from vivified.sdk._manifest import load_manifest
from vivified.sdk._run import run, serve
from vivified.sdk._runtime import PluginRuntime, RuntimeAware, ServicerFactory
from vivified.sdk._settings import PluginSettings
from vivified.sdk._status import abort
from vivified.sdk._storage import ObjectStoreClient
from vivified.sdk._tunnel import Tunnel

__all__ = [
    "ConfigurationError",
    "CoreUntrustedError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "ObjectStoreClient",
    "PermissionDeniedError",
    "PluginCaller",
    "PluginConfig",
    "PluginRuntime",
    "PluginSettings",
    "PublishStream",
    "ReceivedEvent",
    "ResourceExhaustedError",
    "RuntimeAware",
    "ServicerFactory",
    "Subscription",
    "Tunnel",
    "UnauthenticatedError",
    "UnavailableError",
    "VivifiedSDKError",
    "abort",
    "delegation_of",
    "envelope",
    "from_rpc_error",
    "load_manifest",
    "run",
    "serve",
    "target_metadata",
]
