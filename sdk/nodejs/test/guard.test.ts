/** The plugin's server accepts only the core: a real grpc-js server and clients over mTLS on loopback. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { fromServiceError } from "../src/errors.js";
import { IssuedCertificate } from "../src/identity.js";
import { protosFor } from "../src/protos.js";
import { PluginServer } from "../src/server.js";
import { MemoryCertificateProvider } from "../src/transport.js";
import { type Leaf, TestCA } from "./ca.js";

const protos = protosFor();
const TD = "vivified.local";
let ca: TestCA;
let server: PluginServer;
let port = 0;
let initialised = 0;

function issuedOf(leaf: Leaf): IssuedCertificate {
  return Object.assign(Object.create(IssuedCertificate.prototype), { chainPem: leaf.certPem, keyPem: leaf.keyPem });
}

before(async () => {
  ca = await TestCA.create();
  server = new PluginServer(
    protos,
    [{ service: "vivified.communication.v1.CommunicationPluginService", handlers: { GetMessageStatus: () => ({ message_id: "m", status: "DELIVERY_STATUS_DELIVERED" }) } }],
    { init: async () => void (initialised += 1), shutdownRequested: () => undefined },
    TD,
  );
  const certificates = new MemoryCertificateProvider(Buffer.from(ca.rootPem));
  port = await server.bind("127.0.0.1", certificates);
  certificates.install(issuedOf(await ca.leaf({ uri: [`spiffe://${TD}/plugin/demo`], dns: [`demo.plugin.${TD}`] })));
});

after(async () => server.stop(0));

function client(service: string, leaf: Leaf | null): grpc.Client {
  const Client = protos.client(service);
  const creds = leaf
    ? grpc.credentials.createSsl(Buffer.from(ca.rootPem), Buffer.from(leaf.keyPem), Buffer.from(leaf.certPem))
    : grpc.credentials.createSsl(Buffer.from(ca.rootPem));
  return new Client(`127.0.0.1:${port}`, creds, { "grpc.ssl_target_name_override": `demo.plugin.${TD}` });
}

function unary(c: grpc.Client, method: string, request: object): Promise<any> {
  return new Promise((resolve, reject) =>
    (c as any)[method](request, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, reply: any) => (err ? reject(err) : resolve(reply))),
  );
}

test("the core's certificate is served; health turns SERVING only after Init", async () => {
  const core = client("grpc.health.v1.Health", await ca.leaf({ uri: [`spiffe://${TD}/core`], dns: [`core.${TD}`] }));
  assert.equal((await unary(core, "Check", { service: "" })).status, "NOT_SERVING");
  const lifecycle = client("vivified.lifecycle.v1.PluginLifecycleService", await ca.leaf({ uri: [`spiffe://${TD}/core`] }));
  assert.equal((await unary(lifecycle, "Init", { plugin_id: "demo" })).ready, true);
  assert.equal((await unary(lifecycle, "Init", { plugin_id: "demo" })).ready, true);
  assert.equal(initialised, 1);
  assert.equal((await unary(core, "Check", { service: "vivified.communication.v1.CommunicationPluginService" })).status, "SERVING");
  core.close();
  lifecycle.close();
});

for (const [who, uri] of [
  ["another plugin", `spiffe://${TD}/plugin/other`],
  ["an operator", `spiffe://${TD}/operator/admin`],
  ["another trust domain's core", "spiffe://elsewhere.example/core"],
] as const) {
  test(`${who}'s valid certificate is refused with CALLER_NOT_CORE`, async () => {
    const c = client("vivified.communication.v1.CommunicationPluginService", await ca.leaf({ uri: [uri] }));
    await assert.rejects(unary(c, "GetMessageStatus", { message_id: "m" }), (err: grpc.ServiceError) => {
      const typed = fromServiceError(err, protos);
      return err.code === grpc.status.PERMISSION_DENIED && typed.reason === "CALLER_NOT_CORE" && typed.domain === "vivified.sdk";
    });
    c.close();
  });
}

test("a caller without a certificate fails the TLS handshake", async () => {
  const c = client("grpc.health.v1.Health", null);
  await assert.rejects(unary(c, "Check", { service: "" }), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
  c.close();
});
