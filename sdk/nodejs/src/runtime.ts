/**
 * `PluginRuntime`: register, serve, heartbeat, renew, stop — and the three
 * lanes (call, publish/subscribe, fetch) plus the plugin's configuration.
 *
 *     const runtime = new PluginRuntime([echo], settingsFromEnv(process.env));
 *     await runtime.start();
 *     await runtime.waitClosed();
 *
 * `start()` loads the manifest, binds the plugin's server (refusing
 * connections until it has a certificate), registers with the core (one-time
 * join token, fresh key and CSR) or, with a `dataDir` holding the key and
 * certificate of a process that crashed, resumes that registration (no
 * token; a final refusal removes them and registers with the token if there
 * is one), installs the certificate, then heartbeats and renews in the
 * background. A stop deregisters and removes the stored identity. The core
 * calls Init (running `onInit`) once it admitted the plugin; health turns
 * SERVING only then.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

import { ConformanceControl, controlFrom } from "./conformance.js";
import { CoreClient, unary } from "./core-client.js";
import { ConfigurationError, SDK_DOMAIN, VivifiedError, fromServiceError } from "./errors.js";
import { EVENT_BUS, type EventHandler, PublishStream, Subscription, envelope } from "./events.js";
import type { IssuedCertificate } from "./identity.js";
import { loadManifest } from "./manifest.js";
import { type Message, type Protos, protosFor } from "./protos.js";
import { type Contract, PluginServer } from "./server.js";
import type { PluginSettings } from "./settings.js";
import { IdentityStore } from "./stored-identity.js";
import { MemoryCertificateProvider } from "./transport.js";
import { methodCodec, packMessage } from "./typed.js";

/** Reasons after which nothing the plugin does can help: the operator ended it. */
export const FINAL_REASONS = new Set(["PLUGIN_REVOKED", "CERTIFICATE_REVOKED"]);
const MAX_RETRY_MS = 30_000;
const MIN_RENEW_MS = 500;
/** A stored certificate with less than this left is not offered to the core. */
const RESUME_MARGIN_MS = 1000;

/** Whether a refused resume means the stored identity can never be resumed (a disabled plugin may be enabled again). */
function refusedForGood(error: unknown): error is VivifiedError {
  if (!(error instanceof VivifiedError) || error.domain === SDK_DOMAIN) return false;
  return error.code === grpc.status.UNAUTHENTICATED || (error.code === grpc.status.PERMISSION_DENIED && error.reason !== "PLUGIN_DISABLED");
}

export const TARGET_HEADER = "x-vivified-target";
export const IDEMPOTENCY_HEADER = "x-vivified-idempotency-key";
export const DELEGATION_HEADER = "x-vivified-delegation";

export interface RuntimeOptions {
  /** Runs on the core's Init; throwing refuses Init (the core keeps the plugin unhealthy). */
  onInit?: (request: Message) => Promise<void> | void;
  /** Runs once while stopping, after the server stopped and before Deregister. */
  onShutdown?: (reason: string) => Promise<void> | void;
  /** Where log lines go (default: stderr). */
  log?: (message: string) => void;
  clock?: () => Date;
}

export interface CallOptions {
  timeoutSeconds?: number;
  idempotencyKey?: string;
  /** The delegation token of the call being served (`context.delegation`), to act for its user. */
  onBehalfOf?: string;
  /** The contract method path (`/pkg.Service/Method`) when the request type does not name one method. */
  method?: string;
}

/** A plugin's configuration as administrators set it: key → value, plus keys still missing. */
export interface PluginConfig {
  readonly values: Readonly<Record<string, string>>;
  readonly missingKeys: readonly string[];
  readonly sources: Readonly<Record<string, string>>;
}

function configOf(reply: Message): PluginConfig {
  const present = (reply["values"] as Message[]).filter((v) => v["source"] !== "CONFIG_VALUE_SOURCE_UNSET");
  return Object.freeze({
    values: Object.freeze(Object.fromEntries(present.map((v) => [v["key"], v["value"]]))),
    missingKeys: Object.freeze([...(reply["missing_keys"] as string[])]),
    sources: Object.freeze(
      Object.fromEntries(present.map((v) => [v["key"], String(v["source"]).replace("CONFIG_VALUE_SOURCE_", "").toLowerCase()])),
    ),
  });
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

export class PluginRuntime {
  readonly protos: Protos;
  private readonly settings: PluginSettings;
  private readonly options: RuntimeOptions;
  private readonly log: (message: string) => void;
  private readonly clock: () => Date;
  private readonly server: PluginServer;
  private client: CoreClient | null = null;
  private certificates: MemoryCertificateProvider | null = null;
  private readonly background = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private readonly subscriptions: Subscription[] = [];
  private stopping: Promise<void> | null = null;
  private started = false;
  private closedResolve!: () => void;
  private readonly closedPromise: Promise<void>;
  private readonly control: ConformanceControl | undefined;
  private isClosed = false;
  private isInitialised = false;
  private endpointValue = "";
  private identities: IdentityStore | null = null;
  private admitted = false;
  /** How many times the certificate was renewed. */
  renewals = 0;
  /** Whether this start resumed a stored registration (true) or registered (false). */
  resumed = false;
  /** Why the runtime stopped on its own with an error (e.g. the certificate expired), else null. */
  failure: VivifiedError | null = null;

  constructor(contracts: readonly Contract[], settings: PluginSettings, options: RuntimeOptions = {}) {
    this.settings = settings;
    this.options = options;
    this.log = options.log ?? ((message) => process.stderr.write(`vivified-sdk: ${message}\n`));
    this.clock = options.clock ?? (() => new Date());
    this.protos = protosFor(settings.protoDir || undefined);
    this.control = controlFrom(settings.conformanceControl);
    this.server = new PluginServer(this.protos, contracts, {
      init: async (request) => {
        if (this.control?.initHeld()) throw new ConfigurationError("the conformance suite holds Init back", "CONFORMANCE_INIT_HELD");
        await this.options.onInit?.(request);
        this.isInitialised = true;
        this.log(`initialised by the core as ${request["plugin_id"]}`);
        // The conformance suite's error probes run once, after Init, in the background.
        const control = this.control;
        if (control !== undefined) {
          setImmediate(() => void control.probeErrors({
            call: (target, requestType, message) => this.call(target, requestType, message, { timeoutSeconds: 10 }),
            fetch: (message) => this.fetch({ ...message, timeoutSeconds: 10 }),
          }));
        }
      },
      shutdownRequested: (reason) => {
        this.log(`the core asked the plugin to shut down: ${reason.slice(0, 200)}`);
        setImmediate(() => void this.stop(reason));
      },
    }, settings.trustDomain);
    this.closedPromise = new Promise((resolve) => (this.closedResolve = resolve));
  }

  get pluginId(): string {
    return this.requireClient().spiffeId.split("/").pop()!;
  }
  /** `host:port`, or `unix:<path>` with `listenSocket`, where the plugin serves (sent to the core in Register). */
  get endpoint(): string {
    return this.endpointValue;
  }
  /** The core's mTLS address in use. */
  get coreAddress(): string {
    return this.requireClient().coreAddress;
  }
  get initialised(): boolean {
    return this.isInitialised;
  }
  get closed(): boolean {
    return this.isClosed;
  }
  /** The current certificate chain (PEM), used as both client and server certificate. */
  get certificatePem(): string {
    const issued = this.client?.current;
    if (!issued) throw new VivifiedError("the plugin is not registered", { reason: "NOT_CONNECTED", domain: SDK_DOMAIN });
    return issued.chainPem;
  }

  private requireClient(): CoreClient {
    if (this.client === null) throw new VivifiedError("the plugin is not registered", { reason: "NOT_CONNECTED", domain: SDK_DOMAIN });
    return this.client;
  }

  /** Register and start serving; throws ConfigurationError, CoreUntrustedError or the core's typed refusal. */
  async start(): Promise<void> {
    if (this.started) throw new VivifiedError("start() was already called", { reason: "ALREADY_STARTED", domain: SDK_DOMAIN });
    this.started = true;
    try {
      await this.startOnce();
    } catch (error) {
      await this.server.stop(0);
      this.client?.close();
      this.markClosed();
      throw error;
    }
  }

  private async startOnce(): Promise<void> {
    const settings = this.settings;
    const manifest = loadManifest(settings.manifestPath, this.protos);
    const missing = (manifest["contracts"] as string[]).filter((c) => !this.server.serviceNames.includes(c)).sort();
    if (missing.length > 0) throw new ConfigurationError(`the manifest declares contracts no implementation serves: ${missing.join(", ")}`);
    let rootPem: Buffer;
    try {
      rootPem = readFileSync(settings.caFile);
    } catch (error) {
      throw new ConfigurationError(`cannot read the core's CA file ${settings.caFile}: ${(error as Error).message}`);
    }
    this.certificates = new MemoryCertificateProvider(rootPem);
    if (settings.listenSocket) {
      // A sandboxed plugin: the core dials this socket (its path is the endpoint).
      await this.server.bindSocket(settings.listenSocket, this.certificates);
      this.endpointValue = `unix:${settings.listenSocket}`;
    } else {
      const port = await this.server.bind(settings.listenHost, this.certificates);
      const host = settings.advertiseHost || settings.listenHost;
      this.endpointValue = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    }
    const client = (this.client = new CoreClient(settings, rootPem, manifest, this.protos, this.clock));
    if (settings.dataDir) this.identities = new IdentityStore(settings.dataDir, this.log);
    const { issued, reply } = await this.admit(client);
    this.admitted = true;
    this.storeIdentity(issued);
    this.certificates.install(issued, client.trustedRoots);
    this.log(`${this.resumed ? "resumed" : "registered"} as ${client.spiffeId}; serving on ${this.endpointValue}; core at ${client.coreAddress}`);
    const interval = Math.max(Number(reply["heartbeat_interval_seconds"]) || 1, 1);
    this.loops.push(this.heartbeatForever(interval), this.renewForever());
  }

  /** Resume the stored registration or register with the join token (see the class comment); the client is connected after. */
  private async admit(client: CoreClient): Promise<{ issued: IssuedCertificate; reply: Message }> {
    const token = this.settings.joinToken;
    const stored = this.identities?.load(client.spiffeId, this.clock(), RESUME_MARGIN_MS);
    if (stored !== undefined && this.identities !== null) {
      try {
        const reply = await client.resume(this.endpointValue, stored);
        this.resumed = true;
        return { issued: stored.issued, reply };
      } catch (error) {
        if (!refusedForGood(error)) throw error;
        this.identities.discard();
        if (!token) {
          const Refusal = error.constructor as new (message: string, fields: object) => VivifiedError;
          throw new Refusal(
            `the core refused to resume the stored registration (${error.message}) and no join token is set (VIVIFIED_JOIN_TOKEN): approve the plugin again for a new one`,
            { reason: error.reason, domain: error.domain, metadata: error.metadata, code: error.code },
          );
        }
        this.log(`the core refused to resume the stored registration (${error}); registering`);
      }
    }
    if (!token) {
      throw new ConfigurationError(
        `no join token (VIVIFIED_JOIN_TOKEN) and no stored registration to resume (${this.identities?.path ?? "no data dir (VIVIFIED_DATA_DIR) is set"})`,
        "SETTING_MISSING",
      );
    }
    const registered = await client.register(this.endpointValue);
    client.connect(registered.issued);
    return registered;
  }

  private storeIdentity(issued: IssuedCertificate): void {
    if (this.identities === null || this.client === null) return;
    try {
      this.identities.save(this.client.spiffeId, issued, this.client.trustedRoots, this.client.coreAddress);
    } catch (error) {
      // The plugin runs on; only a restart after a crash would then need a new token.
      this.log(`could not store the identity in ${this.identities.path}: ${(error as Error).message}`);
    }
  }

  private async heartbeatForever(intervalSeconds: number): Promise<void> {
    let interval = intervalSeconds;
    let last = "";
    const signal = this.background.signal;
    while (!signal.aborted) {
      try {
        const reply = await this.requireClient().heartbeat();
        if (last) this.log("heartbeat works again");
        last = "";
        if (reply["heartbeat_interval_seconds"] > 0) interval = reply["heartbeat_interval_seconds"];
      } catch (error) {
        const e = error as VivifiedError;
        if (signal.aborted) return;
        if (FINAL_REASONS.has(e.reason)) {
          this.log(`the core ended this plugin's registration: ${e}`);
          void this.stop(e.reason.toLowerCase());
          return;
        }
        const key = `${e.code}/${e.reason}`;
        if (key !== last) this.log(`heartbeat failed: ${e}`);
        last = key;
      }
      await sleep(Math.max(interval, 0.1) * 1000, signal);
    }
  }

  private async renewForever(): Promise<void> {
    const signal = this.background.signal;
    while (!signal.aborted) {
      const current = this.requireClient().current!;
      const due = current.renewTime(this.settings.renewAtFraction).getTime() - this.clock().getTime();
      await sleep(Math.max(due, MIN_RENEW_MS), signal);
      let delay = 1000;
      while (!signal.aborted) {
        let issued: IssuedCertificate;
        try {
          issued = await this.requireClient().renew();
        } catch (error) {
          const e = error as VivifiedError;
          if (signal.aborted) return;
          if (FINAL_REASONS.has(e.reason)) {
            this.log(`the core refused to renew the certificate: ${e}`);
            void this.stop(e.reason.toLowerCase());
            return;
          }
          this.log(`certificate renewal failed: ${e}`);
          const remaining = current.notAfter.getTime() - this.clock().getTime();
          if (remaining <= 0) {
            this.failure ??= new VivifiedError(
              "the plugin's certificate expired before it could be renewed; restart with a new join token",
              { reason: "CERTIFICATE_EXPIRED", domain: SDK_DOMAIN },
            );
            void this.stop("certificate expired");
            return;
          }
          await sleep(Math.min(delay, remaining), signal);
          delay = Math.min(delay * 2, MAX_RETRY_MS);
          continue;
        }
        // New connections (both ways) use the new certificate; open ones keep theirs until they end.
        this.certificates!.install(issued, this.requireClient().trustedRoots);
        this.requireClient().connect(issued);
        this.storeIdentity(issued);
        this.renewals += 1;
        this.log(`certificate renewed; valid until ${issued.notAfter.toISOString()}`);
        break;
      }
    }
  }

  /** A generated client of `service` on the current core channel (replaced on renewal: fetch one per use). */
  coreClient(service: string): grpc.Client {
    return this.requireClient().client(service);
  }

  /**
   * Call another plugin's contract operation through the core (operator lane).
   *
   *     const reply = await runtime.call("example-echo", "vivified.communication.v1.SendMessageRequest", { message });
   *
   * Both approved manifests must declare the operation (`calls` / `provides`).
   * Throws PermissionDeniedError (POLICY_DENIED), UnavailableError (TARGET_UNAVAILABLE) or the target's own error.
   */
  async call(target: string, requestType: string, request: Message, options: CallOptions = {}): Promise<Message> {
    const method = options.method
      ? { path: options.method, responseType: "" }
      : this.protos.methodFor(requestType);
    const responseType = method.responseType || this.responseTypeOf(options.method!);
    const metadata = new grpc.Metadata();
    metadata.set(TARGET_HEADER, target);
    if (options.idempotencyKey) metadata.set(IDEMPOTENCY_HEADER, options.idempotencyKey);
    if (options.onBehalfOf) metadata.set(DELEGATION_HEADER, options.onBehalfOf);
    const client = this.coreClient("vivified.registry.v1.PluginRegistryService");
    const callOptions: grpc.CallOptions = options.timeoutSeconds ? { deadline: Date.now() + options.timeoutSeconds * 1000 } : {};
    const bytes = this.protos.encode(requestType, request);
    const reply = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest<Buffer, Buffer>(method.path, (b) => b, (b) => b, bytes, metadata, callOptions, (err, value) =>
        err ? reject(fromServiceError(err, this.protos)) : resolve(value!),
      ),
    );
    return this.protos.decode(responseType, reply);
  }

  /**
   * `call` on the generated types (gen/ts): the method's schema gives the path and the codecs.
   *
   *     import { CommunicationPluginService } from "@vivified/gen/vivified/communication/v1/communication_pb.js";
   *     const status = await runtime.callMethod("example-echo", CommunicationPluginService.method.getMessageStatus, { messageId: "m-1" });
   */
  async callMethod<I extends DescMessage, O extends DescMessage>(
    target: string,
    method: DescMethod & { input: I; output: O },
    request: MessageInitShape<I>,
    options: Omit<CallOptions, "method"> = {},
  ): Promise<MessageShape<O>> {
    const codec = methodCodec(method);
    const metadata = new grpc.Metadata();
    metadata.set(TARGET_HEADER, target);
    if (options.idempotencyKey) metadata.set(IDEMPOTENCY_HEADER, options.idempotencyKey);
    if (options.onBehalfOf) metadata.set(DELEGATION_HEADER, options.onBehalfOf);
    const client = this.coreClient("vivified.registry.v1.PluginRegistryService");
    const callOptions: grpc.CallOptions = options.timeoutSeconds ? { deadline: Date.now() + options.timeoutSeconds * 1000 } : {};
    const reply = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest<Buffer, Buffer>(codec.path, (b) => b, (b) => b, codec.encode(request), metadata, callOptions, (err, value) =>
        err ? reject(fromServiceError(err, this.protos)) : resolve(value!),
      ),
    );
    return codec.decode(reply);
  }

  /** `publish` of a generated message (gen/ts): its schema names the event type. */
  publishMessage<D extends DescMessage>(schema: D, payload: MessageInitShape<D>, options: { eventId?: string; timeoutSeconds?: number } = {}): Promise<Message> {
    const event = { event_id: options.eventId ?? randomUUID().replaceAll("-", ""), event_type: schema.typeName, payload: packMessage(schema, payload) };
    return unary(this.coreClient(EVENT_BUS), "Publish", { event }, this.protos, options);
  }

  private responseTypeOf(path: string): string {
    const [, service, method] = path.split("/");
    const definition = this.protos.service(service!)[method!] as any;
    if (definition === undefined) throw new ConfigurationError(`no method ${path}`, "METHOD_UNKNOWN");
    const pkg = service!.slice(0, service!.lastIndexOf("."));
    return `${pkg}.${definition.responseType.type.name}`;
  }

  /** Publish one canonical event; resolves once the core stored it durably. */
  publish(eventType: string, payload: Message, options: { eventId?: string; timeoutSeconds?: number } = {}): Promise<Message> {
    return unary(this.coreClient(EVENT_BUS), "Publish", { event: envelope(this.protos, eventType, payload, options.eventId) }, this.protos, options);
  }

  /** Many publishes on one stream, acknowledged in order (see `PublishStream`). */
  publishStream(): PublishStream {
    return new PublishStream(this.coreClient(EVENT_BUS), this.protos);
  }

  /**
   * Serve the durable subscription `name`: each handler gets the payload and a
   * `ReceivedEvent`; returning acknowledges, throwing asks for redelivery.
   */
  subscribe(name: string, handlers: Readonly<Record<string, EventHandler>>): Subscription {
    const subscription = new Subscription(() => this.coreClient(EVENT_BUS), this.protos, name, handlers, this.log, this.control);
    this.subscriptions.push(subscription);
    return subscription;
  }

  /**
   * An HTTP request through the core's egress proxy, to a host the approved manifest allows.
   *
   *     const reply = await runtime.fetch({ method: "POST", url, headers: [{ name: "content-type", value: "application/json" }], body });
   */
  fetch(request: { method: string; url: string; headers?: { name: string; value: string }[]; body?: Buffer; timeoutSeconds?: number }): Promise<Message> {
    const message: Message = { method: request.method, url: request.url, headers: request.headers ?? [], body: request.body ?? Buffer.alloc(0) };
    if (request.timeoutSeconds) message["timeout"] = { seconds: Math.floor(request.timeoutSeconds), nanos: 0 };
    return unary(this.coreClient("vivified.egress.v1.EgressProxyService"), "Fetch", message, this.protos, {
      timeoutSeconds: (request.timeoutSeconds ?? 30) + 5,
    });
  }

  /** This plugin's configuration (keys its manifest declares under `config`; secrets in clear). */
  async config(timeoutSeconds = 10): Promise<PluginConfig> {
    return configOf(await unary(this.coreClient("vivified.config.v1.ConfigService"), "GetMyConfig", {}, this.protos, { timeoutSeconds }));
  }

  /** The configuration now, then after every change; reopened on the current channel after a break. */
  async *watchConfig(retrySeconds = 1): AsyncGenerator<PluginConfig> {
    while (!this.background.signal.aborted) {
      const call = (this.coreClient("vivified.config.v1.ConfigService") as any).WatchMyConfig({}) as grpc.ClientReadableStream<Message>;
      try {
        for await (const reply of call) yield configOf(reply["config"]);
      } catch (error) {
        const e = fromServiceError(error as grpc.ServiceError, this.protos);
        if (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.CANCELLED) throw e;
      } finally {
        call.cancel();
      }
      await sleep(retrySeconds * 1000, this.background.signal);
    }
  }

  /** Send one heartbeat now; throws the typed error of a refusal. */
  async heartbeat(): Promise<void> {
    await this.requireClient().heartbeat();
  }

  /**
   * Stop gracefully: subscriptions, background loops, the server (in-flight
   * calls get `shutdownGraceSeconds`), `onShutdown`, a best-effort Deregister,
   * then the channels. Idempotent; concurrent callers share one stop.
   */
  stop(reason = "shutdown"): Promise<void> {
    this.stopping ??= this.stopOnce(reason);
    return this.stopping;
  }

  private async stopOnce(reason: string): Promise<void> {
    try {
      await Promise.all(this.subscriptions.map((s) => s.close()));
      this.background.abort();
      await Promise.allSettled(this.loops);
      await this.server.stop(this.settings.shutdownGraceSeconds);
      try {
        await this.options.onShutdown?.(reason);
      } catch (error) {
        this.log(`the plugin's onShutdown hook failed: ${(error as Error)?.message ?? error}`);
      }
      if (this.client?.current) {
        try {
          await this.client.deregister(reason);
        } catch (error) {
          this.log(`deregistration not acknowledged: ${error}`);
        }
      }
      // Deregistered (or meant to be): nothing to resume from.
      if (this.admitted) this.identities?.discard();
      this.client?.close();
      this.log(`plugin stopped: ${reason}`);
    } finally {
      this.markClosed();
    }
  }

  private markClosed(): void {
    this.isClosed = true;
    this.closedResolve();
  }

  /** Resolves once the runtime has stopped (by `stop()`, the core's Shutdown, or revocation). */
  waitClosed(): Promise<void> {
    return this.closedPromise;
  }
}
