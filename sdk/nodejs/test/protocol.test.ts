import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { dialable } from "../src/core-client.js";
import { ConfigurationError } from "../src/errors.js";
import { acceptIssued, newKeyAndCsr, uriSans } from "../src/identity.js";
import { loadManifest } from "../src/manifest.js";
import { TYPE_URL_PREFIX, protosFor } from "../src/protos.js";
import { settingsFromEnv } from "../src/settings.js";
import { TestCA, importSpki } from "./ca.js";

const protos = protosFor();

test("every proto under proto/ loads with -import-path proto alone (health and google.rpc included)", () => {
  assert.ok(protos.service("grpc.health.v1.Health")["Check"]);
  assert.ok(protos.hasType("google.rpc.ErrorInfo"));
  assert.ok(protos.service("vivified.registry.v1.PluginRegistryService")["Register"]);
});

test("Any payloads carry type.googleapis.com/<full name> and round-trip", () => {
  const any = protos.pack("vivified.events.v1.SecurityAlert", { alert_id: "a-1", severity: "SEVERITY_CRITICAL" });
  assert.equal(any.type_url, `${TYPE_URL_PREFIX}vivified.events.v1.SecurityAlert`);
  const back = protos.unpack(any);
  assert.equal(back.typeName, "vivified.events.v1.SecurityAlert");
  assert.equal(back.value["severity"], "SEVERITY_CRITICAL");
  assert.throws(() => protos.unpack({ type_url: "vivified.events.v1.SecurityAlert", value: any.value }));
});

test("a contract call's method is found from its request type", () => {
  const m = protos.methodFor("vivified.communication.v1.GetMessageStatusRequest");
  assert.equal(m.path, "/vivified.communication.v1.CommunicationPluginService/GetMessageStatus");
  assert.equal(m.responseType, "vivified.communication.v1.GetMessageStatusResponse");
});

test("the core endpoint comes from RegisterResponse; a wildcard host is replaced by the bootstrap host", () => {
  assert.equal(dialable("10.0.0.5:7443", "10.0.0.5:7444"), "10.0.0.5:7443");
  assert.equal(dialable("0.0.0.0:7443", "core.internal.example:7444"), "core.internal.example:7443");
  assert.equal(dialable("[::]:7443", "10.1.2.3:7444"), "10.1.2.3:7443");
  assert.throws(() => dialable("", "a:1"), /CORE_ENDPOINT_MISSING|core_endpoint/);
});

test("settings come from the same VIVIFIED_* variables as the Python SDK", () => {
  assert.throws(() => settingsFromEnv({}), (e: unknown) => e instanceof ConfigurationError && e.reason === "SETTING_MISSING");
  const s = settingsFromEnv({ VIVIFIED_MANIFEST: "m.yaml", VIVIFIED_JOIN_TOKEN: "t", VIVIFIED_CA_FILE: "ca.crt" });
  assert.equal(s.bootstrapAddress, "127.0.0.1:7444");
  assert.equal(s.coreAddress, "");
  assert.equal(s.trustDomain, "vivified.local");
});

test("the manifest is read as the core reads it: echo's manifest loads; duplicate and unknown keys are refused", () => {
  const echo = loadManifest(join(protos.protoDir, "..", "plugins", "example_echo", "manifest.yaml"), protos);
  assert.equal(echo["id"], "example-echo");
  assert.deepEqual(echo["compliance"]["data_classifications"], ["CLASSIFICATION_INTERNAL"]);
  const dir = mkdtempSync(join(tmpdir(), "manifest-"));
  writeFileSync(join(dir, "dup.yaml"), "id: a\nid: b\n");
  writeFileSync(join(dir, "unknown.yaml"), "id: a\nsurprise: 1\n");
  assert.throws(() => loadManifest(join(dir, "dup.yaml"), protos), ConfigurationError);
  assert.throws(() => loadManifest(join(dir, "unknown.yaml"), protos), /unknown keys: surprise/);
});

test("an issued certificate is accepted only for our key and our single URI SAN", async () => {
  const ca = await TestCA.create();
  const requested = await newKeyAndCsr("demo");
  assert.match(requested.csrPem, /BEGIN CERTIFICATE REQUEST/);
  const id = "spiffe://vivified.local/plugin/demo";
  const good = await ca.leaf({ uri: [id], dns: ["demo.plugin.vivified.local"] }, await importSpki(requested.spki));
  const issued = acceptIssued(good.certPem + ca.rootPem, requested, id, new Date());
  assert.ok(issued.notAfter > new Date());
  assert.deepEqual(uriSans(good.certPem), [id]);
  const otherKey = await ca.leaf({ uri: [id] });
  assert.throws(() => acceptIssued(otherKey.certPem, requested, id, new Date()), /another public key/);
  const twoUris = await ca.leaf({ uri: [id, "spiffe://vivified.local/core"] }, await importSpki(requested.spki));
  assert.throws(() => acceptIssued(twoUris.certPem, requested, id, new Date()), /single URI SAN/);
});

test("renewal is due at the fraction of the lifetime counted from receipt, not from the backdated notBefore", async () => {
  const ca = await TestCA.create();
  const requested = await newKeyAndCsr("demo");
  const id = "spiffe://vivified.local/plugin/demo";
  const leaf = await ca.leaf({ uri: [id] }, await importSpki(requested.spki));
  const received = new Date();
  const issued = acceptIssued(leaf.certPem, requested, id, received);
  const due = issued.renewTime(0.5).getTime();
  assert.ok(due > received.getTime());
  assert.ok(Math.abs(due - (received.getTime() + (issued.notAfter.getTime() - received.getTime()) / 2)) < 2);
});
