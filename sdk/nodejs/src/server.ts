/**
 * The plugin's own gRPC server: its contract implementations, the lifecycle
 * service and `grpc.health.v1.Health`, over mTLS, behind the core-only guard.
 * Health reports NOT_SERVING until the core's Init succeeded.
 */
import { lstatSync, unlinkSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";

import { ConfigurationError, toStatusObject } from "./errors.js";
import { coreOnlyInterceptor } from "./guard.js";
import type { Message, Protos } from "./protos.js";
import type { MemoryCertificateProvider } from "./transport.js";

/** What a handler receives beside the request: the call's metadata and its delegation token. */
export interface CallContext {
  readonly metadata: grpc.Metadata;
  /** The `x-vivified-delegation` token the core sent ("" when no user is behind the call). */
  readonly delegation: string;
  /** Whether the caller cancelled the call. */
  readonly cancelled: boolean;
}

export type UnaryHandler = (request: Message, context: CallContext) => Promise<Message> | Message;
export type StreamHandler = (request: Message, context: CallContext) => AsyncIterable<Message>;

/** A contract implementation: the service's full name and a handler per method. */
export interface Contract {
  readonly service: string;
  readonly handlers: Readonly<Record<string, UnaryHandler | StreamHandler>>;
  /** How its messages are (de)serialised; default: the plain objects of `proto/` (see `typedContract` for generated types). */
  readonly definition?: grpc.ServiceDefinition;
}

const HEALTH = "grpc.health.v1.Health";
const LIFECYCLE = "vivified.lifecycle.v1.PluginLifecycleService";

function contextOf(call: grpc.ServerUnaryCall<Message, Message> | grpc.ServerWritableStream<Message, Message>): CallContext {
  const value = call.metadata.get("x-vivified-delegation")[0];
  return {
    metadata: call.metadata,
    delegation: typeof value === "string" ? value : "",
    get cancelled() {
      return call.cancelled;
    },
  };
}

/** Wrap async handlers into grpc-js callbacks; a thrown VivifiedError keeps its code and ErrorInfo. */
export function implementation(
  protos: Protos,
  definition: grpc.ServiceDefinition,
  handlers: Readonly<Record<string, UnaryHandler | StreamHandler>>,
  service: string,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = handlers[name];
    if (handler === undefined) {
      impl[name] = (_call: unknown, callback: grpc.sendUnaryData<Message>) =>
        callback({ code: grpc.status.UNIMPLEMENTED, details: `${service}/${name} is not implemented` });
      continue;
    }
    if (method.requestStream) throw new ConfigurationError(`${service}/${name}: client-streaming methods are not supported`);
    if (method.responseStream) {
      impl[name] = (call: grpc.ServerWritableStream<Message, Message>) => {
        (async () => {
          for await (const item of (handler as StreamHandler)(call.request, contextOf(call))) {
            if (call.cancelled) return;
            if (!call.write(item)) await new Promise((resolve) => call.once("drain", resolve));
          }
          call.end();
        })().catch((error: unknown) => call.destroy(Object.assign(new Error("handler failed"), toStatusObject(protos, error))));
      };
      continue;
    }
    impl[name] = (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
      Promise.resolve()
        .then(() => (handler as UnaryHandler)(call.request, contextOf(call)))
        .then(
          (reply) => callback(null, reply),
          (error: unknown) => callback(toStatusObject(protos, error) as grpc.ServerErrorResponse),
        );
    };
  }
  return impl;
}

type HealthWatcher = (status: string) => void;

/** `grpc.health.v1.Health`: Check and Watch for "" and every served contract. */
class HealthService {
  private readonly statuses = new Map<string, string>();
  private readonly watchers = new Map<string, Set<HealthWatcher>>();

  set(service: string, status: string): void {
    this.statuses.set(service, status);
    for (const watcher of this.watchers.get(service) ?? []) watcher(status);
  }

  implementation(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        const status = this.statuses.get(call.request["service"] ?? "");
        if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: "unknown service" });
        else callback(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<Message, Message>) => {
        const service: string = call.request["service"] ?? "";
        const watcher: HealthWatcher = (status) => call.write({ status });
        watcher(this.statuses.get(service) ?? "SERVICE_UNKNOWN");
        const set = this.watchers.get(service) ?? new Set<HealthWatcher>();
        set.add(watcher);
        this.watchers.set(service, set);
        call.on("cancelled", () => set.delete(watcher));
        call.on("close", () => set.delete(watcher));
      },
      List: (_call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        callback(null, { statuses: Object.fromEntries([...this.statuses].map(([k, v]) => [k, { status: v }])) });
      },
    };
  }
}

export interface LifecycleHooks {
  /** Runs the plugin's Init; throwing refuses Init with FAILED_PRECONDITION PLUGIN_INIT_FAILED. */
  init(request: Message): Promise<void>;
  /** The core asked the plugin to stop (answered first, then stopped). */
  shutdownRequested(reason: string): void;
}

export class PluginServer {
  private readonly server: grpc.Server;
  private readonly health = new HealthService();
  private readonly services: string[];
  private port = 0;

  constructor(protos: Protos, contracts: readonly Contract[], hooks: LifecycleHooks, trustDomain: string) {
    this.server = new grpc.Server({ interceptors: [coreOnlyInterceptor(trustDomain, protos)] });
    this.services = contracts.map((c) => c.service);
    for (const contract of contracts) {
      const definition = contract.definition ?? protos.service(contract.service);
      this.server.addService(definition, implementation(protos, definition, contract.handlers, contract.service));
    }
    let initialised: Promise<void> | undefined;
    this.server.addService(
      protos.service(LIFECYCLE),
      implementation(
        protos,
        protos.service(LIFECYCLE),
        {
          // Init is idempotent: a second call waits for (or repeats the answer of) the first.
          Init: async (request) => {
            initialised ??= hooks.init(request);
            try {
              await initialised;
            } catch (error) {
              initialised = undefined;
              throw error;
            }
            this.setServing(true);
            return { ready: true };
          },
          Shutdown: (request) => {
            hooks.shutdownRequested(request["reason"] || "shutdown requested by the core");
            return {};
          },
        },
        LIFECYCLE,
      ),
    );
    this.server.addService(protos.service(HEALTH), this.health.implementation());
    this.setServing(false);
  }

  get serviceNames(): readonly string[] {
    return this.services;
  }

  /** Bind an OS-chosen port; connections are dropped until a certificate is installed in `certificates`. */
  async bind(host: string, certificates: MemoryCertificateProvider): Promise<number> {
    const address = host.includes(":") ? `[${host}]:0` : `${host}:0`;
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address, certificates.credentials(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    return this.port;
  }

  /**
   * Bind the Unix socket `path` (a sandboxed plugin's, which the core dials as `unix:<path>`); connections
   * are dropped until a certificate is installed in `certificates`. A socket left there by a previous run of
   * the plugin (one killed before it could close its server) is replaced; any other file at `path` is left
   * alone and refused. Closing the server removes the socket.
   */
  async bindSocket(path: string, certificates: MemoryCertificateProvider): Promise<void> {
    let existing: ReturnType<typeof lstatSync> | undefined;
    try {
      existing = lstatSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (existing !== undefined) {
      if (!existing.isSocket()) throw new ConfigurationError(`${path} exists and is not a socket; refusing to serve there`, "LISTEN_SOCKET_OCCUPIED");
      unlinkSync(path);
    }
    await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`unix:${path}`, certificates.credentials(), (err, port) => (err ? reject(err) : resolve(port))),
    );
  }

  setServing(serving: boolean): void {
    const status = serving ? "SERVING" : "NOT_SERVING";
    for (const name of ["", ...this.services]) this.health.set(name, status);
  }

  /** Refuse new calls, let in-flight ones finish within `graceSeconds`, then cancel the rest. */
  async stop(graceSeconds: number): Promise<void> {
    this.setServing(false);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceSeconds * 1000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
