/**
 * `@vivified/sdk` — the Vivified plugin SDK for Node.js, the same shape as the Python SDK.
 *
 * A plugin hands its contract implementations to `run`; the SDK registers it
 * (one-time join token, fresh key, CSR), serves it over mutual TLS accepting
 * only the core's certificate, answers the core's Init/Shutdown and
 * `grpc.health.v1` checks, heartbeats, renews its certificate before expiry
 * without a restart, and stops gracefully on SIGTERM. The wire protocol it
 * implements is written down in docs/plugin-protocol.md.
 *
 *     import { run, settingsFromEnv } from "@vivified/sdk";
 *     await run([{
 *       service: "vivified.communication.v1.CommunicationPluginService",
 *       handlers: {
 *         SendMessage: async (request) => ({ message_id: request.message.message_id, status: "DELIVERY_STATUS_DELIVERED" }),
 *       },
 *     }], settingsFromEnv(process.env));
 */
export { ConformanceControl, CONTROL_ENV } from "./conformance.js";
export { CoreClient, dialable } from "./core-client.js";
export {
  ConfigurationError,
  CoreUntrustedError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  SDK_DOMAIN,
  UnauthenticatedError,
  UnavailableError,
  VivifiedError,
  fromServiceError,
  fromStatus,
  statusMetadata,
} from "./errors.js";
export { type EventHandler, PublishStream, type ReceivedEvent, Subscription, envelope } from "./events.js";
export { CALLER_NOT_CORE, coreOnlyInterceptor } from "./guard.js";
export { IssuedCertificate, acceptIssued, newKeyAndCsr, uriSans } from "./identity.js";
export { loadManifest } from "./manifest.js";
export { type Message, Protos, TYPE_URL_PREFIX, defaultProtoDir, protosFor } from "./protos.js";
export { run } from "./run.js";
export {
  type CallOptions,
  DELEGATION_HEADER,
  FINAL_REASONS,
  IDEMPOTENCY_HEADER,
  type PluginConfig,
  PluginRuntime,
  type RuntimeOptions,
  TARGET_HEADER,
} from "./runtime.js";
export { type CallContext, type Contract, PluginServer, type StreamHandler, type UnaryHandler } from "./server.js";
// The protobuf-es runtime the generated types (gen/ts) are used with.
export { type MessageInitShape, type MessageShape, create, fromBinary, toBinary } from "@bufbuild/protobuf";
export { type TypedHandlers, methodCodec, packMessage, serviceDefinition, typedContract, unpackMessage } from "./typed.js";
export { DEFAULT_BOOTSTRAP_ADDRESS, DEFAULT_TRUST_DOMAIN, type PluginSettings, pluginSettings, settingsFromEnv } from "./settings.js";
export { MemoryCertificateProvider, coreName, coreSpiffeId } from "./transport.js";
