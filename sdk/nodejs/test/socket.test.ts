/**
 * A sandboxed plugin's transport: it serves on its Unix socket (`listenSocket`) and reaches the core
 * only over the core's two sockets, mTLS and the core's name checked as over TCP. A fake core
 * (real grpc-js servers on Unix sockets in a temp dir) registers the plugin, takes its heartbeats
 * and dials it back on the socket it registered.
 */
import "reflect-metadata";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import * as grpc from "@grpc/grpc-js";
import * as x509 from "@peculiar/x509";

import { ConfigurationError, CoreUntrustedError } from "../src/errors.js";
import { type Message, protosFor } from "../src/protos.js";
import { PluginRuntime } from "../src/runtime.js";
import { pluginSettings, settingsFromEnv } from "../src/settings.js";
import { type Leaf, TestCA, importSpki } from "./ca.js";

const protos = protosFor();
const TD = "vivified.local";
const REGISTRY = "vivified.registry.v1.PluginRegistryService";
const PLUGIN_ID = "example-echo";
const MANIFEST = join(protos.protoDir, "..", "plugins", "example_echo", "manifest.yaml");
const ECHO = {
  service: "vivified.communication.v1.CommunicationPluginService",
  handlers: { GetMessageStatus: (request: Message) => ({ message_id: request["message_id"], status: "DELIVERY_STATUS_DELIVERED" }) },
};

let dir: string;
let ca: TestCA;

before(async () => {
  // A short path under the temp dir: socket paths must fit in 107 bytes.
  dir = mkdtempSync(join(tmpdir(), "vv-node-"));
  ca = await TestCA.create();
  writeFileSync(join(dir, "ca.crt"), ca.rootPem);
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** The registry side of a core on `bootstrap.sock` (TLS) and `core.sock` (mTLS), presenting `serverLeaf`. */
class FakeCore {
  readonly registered: Message[] = [];
  readonly heartbeatPeers: string[] = [];
  private readonly servers: grpc.Server[] = [];

  constructor(private readonly prefix: string) {}

  get bootstrapSocket(): string {
    return join(dir, `${this.prefix}-bootstrap.sock`);
  }
  get coreSocket(): string {
    return join(dir, `${this.prefix}-core.sock`);
  }

  async start(serverLeaf: Leaf): Promise<void> {
    const pair = [{ private_key: Buffer.from(serverLeaf.keyPem), cert_chain: Buffer.from(serverLeaf.certPem) }];
    const registry = {
      Register: async (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        this.registered.push(call.request);
        const csr = new x509.Pkcs10CertificateRequest(call.request["csr_pem"]);
        const leaf = await ca.leaf(
          { uri: [`spiffe://${TD}/plugin/${PLUGIN_ID}`], dns: [`${PLUGIN_ID}.plugin.${TD}`] },
          await importSpki(Buffer.from(csr.publicKey.rawData)),
        );
        callback(null, {
          spiffe_id: `spiffe://${TD}/plugin/${PLUGIN_ID}`,
          certificate_chain_pem: leaf.certPem + ca.rootPem,
          // The core's TCP port, which a sandboxed plugin cannot reach: the configured socket must win.
          core_endpoint: "127.0.0.1:1",
          heartbeat_interval_seconds: 1,
        });
      },
      Heartbeat: (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        const cert = call.getAuthContext()?.sslPeerCertificate;
        const san = cert ? new x509.X509Certificate(new Uint8Array(cert.raw)).getExtension(x509.SubjectAlternativeNameExtension) : null;
        this.heartbeatPeers.push(san?.names.items.find((n) => n.type === "url")?.value ?? "");
        callback(null, { heartbeat_interval_seconds: 1 });
      },
      Deregister: (_call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => callback(null, {}),
    };
    const credentials = [
      [this.bootstrapSocket, grpc.ServerCredentials.createSsl(null, pair, false)],
      [this.coreSocket, grpc.ServerCredentials.createSsl(Buffer.from(ca.rootPem), pair, true)],
    ] as const;
    for (const [socket, creds] of credentials) {
      const server = new grpc.Server();
      server.addService(protos.service(REGISTRY), registry);
      await new Promise<number>((resolve, reject) => server.bindAsync(`unix:${socket}`, creds, (err, port) => (err ? reject(err) : resolve(port))));
      this.servers.push(server);
    }
  }

  stop(): void {
    for (const server of this.servers) server.forceShutdown();
  }
}

function sandboxedSettings(core: FakeCore, listenSocket: string) {
  return settingsFromEnv({
    VIVIFIED_MANIFEST: MANIFEST,
    VIVIFIED_JOIN_TOKEN: "token",
    VIVIFIED_CA_FILE: join(dir, "ca.crt"),
    VIVIFIED_BOOTSTRAP_ADDRESS: `unix:${core.bootstrapSocket}`,
    VIVIFIED_CORE_ADDRESS: `unix:${core.coreSocket}`,
    VIVIFIED_LISTEN_SOCKET: listenSocket,
  }, { connectTimeoutSeconds: 3, shutdownGraceSeconds: 0 });
}

function unary(client: grpc.Client, method: string, request: object): Promise<any> {
  return new Promise((resolve, reject) =>
    (client as any)[method](request, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, reply: any) => (err ? reject(err) : resolve(reply))),
  );
}

test("VIVIFIED_LISTEN_SOCKET is the listenSocket setting; it must be absolute and short enough to bind", () => {
  const base = { VIVIFIED_MANIFEST: "m.yaml", VIVIFIED_JOIN_TOKEN: "t", VIVIFIED_CA_FILE: "ca.crt" };
  assert.equal(settingsFromEnv(base).listenSocket, "");
  assert.equal(settingsFromEnv({ ...base, VIVIFIED_LISTEN_SOCKET: "/run/p/plugin.sock" }).listenSocket, "/run/p/plugin.sock");
  assert.throws(() => settingsFromEnv({ ...base, VIVIFIED_LISTEN_SOCKET: "p/plugin.sock" }), (e: unknown) => e instanceof ConfigurationError && /absolute/.test(e.message));
  assert.throws(
    () => settingsFromEnv({ ...base, VIVIFIED_LISTEN_SOCKET: `/${"d".repeat(110)}/plugin.sock` }),
    (e: unknown) => e instanceof ConfigurationError && e.reason === "SOCKET_PATH_TOO_LONG",
  );
  // Over a socket the RegisterResponse's TCP core_endpoint is unreachable: the core's socket must be given.
  assert.throws(
    () => pluginSettings({ manifestPath: "m.yaml", joinToken: "t", caFile: "ca.crt", bootstrapAddress: "unix:/run/v/bootstrap.sock" }),
    (e: unknown) => e instanceof ConfigurationError && /VIVIFIED_CORE_ADDRESS/.test(e.message),
  );
});

test("with listenSocket the plugin serves on its socket, registers unix:<path> and reaches the core only on its sockets", async () => {
  const core = new FakeCore("ok");
  await core.start(await ca.leaf({ uri: [`spiffe://${TD}/core`], dns: [`core.${TD}`] }));
  const listenSocket = join(dir, "plugin.sock");
  // A socket file a previous run left behind (killed, so it never closed its server) is replaced.
  const killed = spawnSync(process.execPath, [
    "-e",
    "require('node:net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))",
    listenSocket,
  ]);
  assert.equal(killed.signal, "SIGKILL");
  assert.ok(statSync(listenSocket).isSocket());
  const runtime = new PluginRuntime([ECHO], sandboxedSettings(core, listenSocket), { log: () => undefined });
  try {
    await runtime.start();
    assert.equal(runtime.endpoint, `unix:${listenSocket}`);
    assert.equal(core.registered.length, 1);
    assert.equal(core.registered[0]!["endpoint"], `unix:${listenSocket}`);
    assert.equal(runtime.coreAddress, `unix:${core.coreSocket}`);
    await runtime.heartbeat();
    // Heartbeats (this one and the background loop's) came over the core's socket with the plugin's certificate.
    assert.ok(core.heartbeatPeers.length >= 1);
    assert.ok(core.heartbeatPeers.every((peer) => peer === `spiffe://${TD}/plugin/${PLUGIN_ID}`), core.heartbeatPeers.join(", "));
    // The core dials the registered endpoint, presenting its own certificate.
    const coreLeaf = await ca.leaf({ uri: [`spiffe://${TD}/core`], dns: [`core.${TD}`] });
    const Client = protos.client("grpc.health.v1.Health");
    const health = new Client(
      runtime.endpoint,
      grpc.credentials.createSsl(Buffer.from(ca.rootPem), Buffer.from(coreLeaf.keyPem), Buffer.from(coreLeaf.certPem)),
      { "grpc.ssl_target_name_override": `${PLUGIN_ID}.plugin.${TD}` },
    );
    assert.equal((await unary(health, "Check", { service: "" })).status, "NOT_SERVING", "health answers over the socket (SERVING only after Init)");
    health.close();
  } finally {
    await runtime.stop("test over");
    core.stop();
  }
  assert.throws(() => statSync(listenSocket), /ENOENT/, "the socket is removed when the plugin stops");
});

test("over the core's socket a server without the core's name is refused before the join token is sent", async () => {
  const core = new FakeCore("impostor");
  // A valid certificate from the same CA, but another plugin's: over a socket the name is checked as over TCP.
  await core.start(await ca.leaf({ uri: [`spiffe://${TD}/plugin/other`], dns: [`other.plugin.${TD}`] }));
  const runtime = new PluginRuntime([ECHO], sandboxedSettings(core, join(dir, "impostor-plugin.sock")), { log: () => undefined });
  try {
    await assert.rejects(runtime.start(), (e: unknown) => e instanceof CoreUntrustedError);
    assert.equal(core.registered.length, 0, "Register never reached the impostor");
  } finally {
    core.stop();
  }
});

test("a file at listenSocket that is not a socket is refused and left alone", async () => {
  const core = new FakeCore("occupied");
  await core.start(await ca.leaf({ uri: [`spiffe://${TD}/core`], dns: [`core.${TD}`] }));
  const occupied = join(dir, "occupied.sock");
  writeFileSync(occupied, "not a socket");
  const runtime = new PluginRuntime([ECHO], sandboxedSettings(core, occupied), { log: () => undefined });
  try {
    await assert.rejects(runtime.start(), (e: unknown) => e instanceof ConfigurationError && e.reason === "LISTEN_SOCKET_OCCUPIED");
    assert.ok(statSync(occupied).isFile());
    assert.equal(core.registered.length, 0);
  } finally {
    core.stop();
  }
});
