/**
 * The plugin's side of `PluginRegistryService`, with typed errors.
 *
 * Register goes to the bootstrap port over server-authenticated TLS; the
 * other calls (Resume after a restart among them) go over the mTLS channel, which is replaced (not mutated) on
 * renewal: calls already running on the old one finish there.
 */
import * as grpc from "@grpc/grpc-js";

import { CoreUntrustedError, SDK_DOMAIN, VivifiedError, fromServiceError } from "./errors.js";
import { IssuedCertificate, acceptIssued, newKeyAndCsr } from "./identity.js";
import type { Message, Protos } from "./protos.js";
import type { PluginSettings } from "./settings.js";
import type { StoredIdentity } from "./stored-identity.js";
import { bootstrapCredentials, channelOptions, coreName, mtlsCredentials } from "./transport.js";

const REGISTRY = "vivified.registry.v1.PluginRegistryService";

type Unary = (request: Message, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Message>) => grpc.ClientUnaryCall;

/** Call a unary method of a generated client as a promise, turning errors into typed ones. */
export function unary(client: grpc.Client, method: string, request: Message, protos: Protos, options: { timeoutSeconds?: number; metadata?: grpc.Metadata } = {}): Promise<Message> {
  const fn = (client as unknown as Record<string, Unary>)[method];
  if (typeof fn !== "function") throw new VivifiedError(`no method ${method}`, { reason: "METHOD_UNKNOWN", domain: SDK_DOMAIN });
  const callOptions: grpc.CallOptions = options.timeoutSeconds ? { deadline: Date.now() + options.timeoutSeconds * 1000 } : {};
  return new Promise((resolve, reject) =>
    fn.call(client, request, options.metadata ?? new grpc.Metadata(), callOptions, (err, reply) =>
      err ? reject(fromServiceError(err, protos)) : resolve(reply ?? {}),
    ),
  );
}

export class CoreClient {
  readonly spiffeId: string;
  /** The mTLS address in use: the configured one, else the RegisterResponse's `core_endpoint`. */
  coreAddress: string;
  private channel: grpc.Channel | null = null;
  private issued: IssuedCertificate | null = null;
  private readonly retiring = new Set<grpc.Channel>();

  constructor(
    private readonly settings: PluginSettings,
    private rootPem: Buffer,
    private readonly manifest: Message,
    private readonly protos: Protos,
    private readonly clock: () => Date,
  ) {
    this.spiffeId = `spiffe://${settings.trustDomain}/plugin/${manifest["id"]}`;
    this.coreAddress = settings.coreAddress;
  }

  /** Exchange manifest, CSR and join token for a certificate. Not retried: the token works once. */
  async register(endpoint: string): Promise<{ issued: IssuedCertificate; reply: Message }> {
    const requested = await newKeyAndCsr(this.manifest["id"]);
    const Client = this.protos.client(REGISTRY);
    const client = new Client(this.settings.bootstrapAddress, bootstrapCredentials(this.rootPem), channelOptions(this.settings.trustDomain));
    let reply: Message;
    try {
      reply = await unary(client, "Register", {
        manifest: this.manifest,
        csr_pem: requested.csrPem,
        join_token: this.settings.joinToken,
        endpoint,
      }, this.protos, { timeoutSeconds: this.settings.connectTimeoutSeconds });
    } catch (error) {
      // UNAVAILABLE without an ErrorInfo is the transport failing: nothing answered, or the handshake did not verify.
      if (error instanceof VivifiedError && error.code === grpc.status.UNAVAILABLE && !error.reason) {
        throw new CoreUntrustedError(
          `could not reach a trusted core at ${this.settings.bootstrapAddress}: ${error.message}. The core must present a ` +
            `certificate chaining to ${this.settings.caFile} with the name ${coreName(this.settings.trustDomain)}`,
        );
      }
      throw error;
    } finally {
      client.close();
    }
    if (reply["spiffe_id"] !== this.spiffeId) {
      throw new VivifiedError(`the core registered the plugin as ${reply["spiffe_id"]}, expected ${this.spiffeId}`, {
        reason: "ISSUED_CERTIFICATE_INVALID",
        domain: SDK_DOMAIN,
      });
    }
    if (!this.coreAddress) this.coreAddress = dialable(reply["core_endpoint"], this.settings.bootstrapAddress);
    return { issued: acceptIssued(reply["certificate_chain_pem"], requested, this.spiffeId, this.clock()), reply };
  }

  /**
   * Resume the registration `stored` belongs to, now serving at `endpoint`
   * (after a crash: no join token); on success the mTLS channel presents
   * `stored.issued`. Throws the core's typed refusal (e.g. CERTIFICATE_REVOKED,
   * PLUGIN_REVOKED), or CoreUntrustedError when no verified core answered.
   */
  async resume(endpoint: string, stored: StoredIdentity): Promise<Message> {
    const previous = { root: this.rootPem, address: this.coreAddress };
    this.rootPem = stored.rootsPem;
    this.coreAddress = this.settings.coreAddress || stored.coreAddress;
    if (!this.coreAddress) {
      throw new VivifiedError("the stored identity does not say where the core's mTLS port is; set VIVIFIED_CORE_ADDRESS", {
        reason: "CORE_ENDPOINT_MISSING",
        domain: SDK_DOMAIN,
      });
    }
    this.connect(stored.issued);
    try {
      const reply = await unary(this.client(REGISTRY), "Resume", { manifest: this.manifest, endpoint }, this.protos, {
        timeoutSeconds: this.settings.connectTimeoutSeconds,
      });
      const bundle = reply["ca_bundle_pem"];
      if (typeof bundle === "string" && bundle.length > 0) this.rootPem = Buffer.from(bundle);
      return reply;
    } catch (error) {
      this.close();
      this.issued = null;
      const address = this.coreAddress;
      this.rootPem = previous.root;
      this.coreAddress = previous.address;
      if (error instanceof VivifiedError && error.code === grpc.status.UNAVAILABLE && !error.reason) {
        throw new CoreUntrustedError(`could not reach a trusted core at ${address} to resume: ${error.message}`);
      }
      throw error;
    }
  }

  /** Use `issued` for every call from now on; the previous channel closes after the shutdown grace. */
  connect(issued: IssuedCertificate): void {
    const previous = this.channel;
    this.issued = issued;
    this.channel = new grpc.Channel(this.coreAddress, mtlsCredentials(this.rootPem, issued), channelOptions(this.settings.trustDomain));
    if (previous !== null) {
      this.retiring.add(previous);
      setTimeout(() => {
        previous.close();
        this.retiring.delete(previous);
      }, this.settings.shutdownGraceSeconds * 1000).unref();
    }
  }

  /** A client of `service` on the current mTLS channel (fetch one per use: the channel is replaced on renewal). */
  client(service: string): grpc.Client {
    if (this.channel === null) throw new VivifiedError("the plugin is not connected to the core", { reason: "NOT_CONNECTED", domain: SDK_DOMAIN });
    const Client = this.protos.client(service);
    return new Client(this.coreAddress, grpc.credentials.createInsecure(), { channelOverride: this.channel });
  }

  heartbeat(): Promise<Message> {
    return unary(this.client(REGISTRY), "Heartbeat", {}, this.protos, { timeoutSeconds: this.settings.connectTimeoutSeconds });
  }

  /** A new key and certificate; the caller decides when to start using them. */
  async renew(): Promise<IssuedCertificate> {
    const requested = await newKeyAndCsr(this.manifest["id"]);
    const reply = await unary(this.client(REGISTRY), "RenewCertificate", { csr_pem: requested.csrPem }, this.protos, {
      timeoutSeconds: this.settings.connectTimeoutSeconds,
    });
    const issued = acceptIssued(reply["certificate_chain_pem"], requested, this.spiffeId, this.clock());
    // The roots the core trusts now (two during a CA rotation): used from the next `connect` on.
    const bundle = reply["ca_bundle_pem"];
    if (typeof bundle === "string" && bundle.length > 0) this.rootPem = Buffer.from(bundle);
    return issued;
  }

  /** The trust anchors for the core: the CA file's, then the latest renewal's bundle. */
  get trustedRoots(): Buffer {
    return this.rootPem;
  }

  async deregister(reason: string): Promise<void> {
    await unary(this.client(REGISTRY), "Deregister", { reason }, this.protos, { timeoutSeconds: this.settings.connectTimeoutSeconds });
  }

  get current(): IssuedCertificate | null {
    return this.issued;
  }

  close(): void {
    this.channel?.close();
    this.channel = null;
    for (const channel of this.retiring) channel.close();
    this.retiring.clear();
  }
}

/** `core_endpoint` as sent, or with the bootstrap host when the core bound a wildcard host. */
export function dialable(coreEndpoint: string, bootstrapAddress: string): string {
  if (!coreEndpoint) {
    throw new VivifiedError("the core did not say where its mTLS port is (no core_endpoint); set VIVIFIED_CORE_ADDRESS", {
      reason: "CORE_ENDPOINT_MISSING",
      domain: SDK_DOMAIN,
    });
  }
  const split = (address: string): [string, string] => {
    const at = address.lastIndexOf(":");
    return [address.slice(0, at), address.slice(at + 1)];
  };
  const [host, port] = split(coreEndpoint);
  if (host === "0.0.0.0" || host === "[::]" || host === "") return `${split(bootstrapAddress)[0]}:${port}`;
  return coreEndpoint;
}
