/** The stored key and certificate a restarted plugin resumes with (docs/plugin-protocol.md §7). */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { ConfigurationError } from "../src/errors.js";
import { loadIssued } from "../src/identity.js";
import { settingsFromEnv } from "../src/settings.js";
import { IDENTITY_FILE, IdentityStore } from "../src/stored-identity.js";
import { TestCA } from "./ca.js";

const SPIFFE = "spiffe://vivified.local/plugin/webhook-notifier";

async function stored(): Promise<{ store: IdentityStore; ca: TestCA; dir: string; logs: string[] }> {
  const ca = await TestCA.create();
  const dir = mkdtempSync(join(tmpdir(), "vivified-identity-"));
  const logs: string[] = [];
  const store = new IdentityStore(join(dir, "data"), (line) => logs.push(line));
  const leaf = await ca.leaf({ uri: [SPIFFE] });
  store.save(SPIFFE, loadIssued(leaf.certPem, leaf.keyPem, SPIFFE, new Date()), Buffer.from(ca.rootPem), "127.0.0.1:7443");
  return { store, ca, dir, logs };
}

test("m3: a saved identity is 0600, loads back with its roots and core address", async () => {
  const { store, ca } = await stored();
  assert.equal(statSync(store.path).mode & 0o777, 0o600);
  assert.ok(store.path.endsWith(IDENTITY_FILE));
  const loaded = store.load(SPIFFE, new Date(), 1000);
  assert.ok(loaded);
  assert.equal(loaded.rootsPem.toString(), ca.rootPem);
  assert.equal(loaded.coreAddress, "127.0.0.1:7443");
});

test("m3: an identity expiring within the margin, another plugin's, or with a foreign key is removed, not offered", async () => {
  let { store, logs } = await stored();
  const loaded = store.load(SPIFFE, new Date(), 1000)!;
  assert.equal(store.load(SPIFFE, new Date(loaded.issued.notAfter.getTime() - 500), 1000), undefined);
  assert.throws(() => statSync(store.path));
  assert.match(logs.join("\n"), /expire/);

  ({ store } = await stored());
  assert.equal(store.load("spiffe://vivified.local/plugin/another", new Date(), 1000), undefined);
  assert.throws(() => statSync(store.path));

  const fresh = await stored();
  const other = await fresh.ca.leaf({ uri: [SPIFFE] });
  const document = JSON.parse(readFileSync(fresh.store.path, "utf8"));
  document.key_pem = other.keyPem; // a key the stored certificate does not certify
  writeFileSync(fresh.store.path, JSON.stringify(document));
  assert.equal(fresh.store.load(SPIFFE, new Date(), 1000), undefined);
  assert.throws(() => statSync(fresh.store.path));
});

test("m3: discard removes the file and is a no-op when there is none", async () => {
  const { store } = await stored();
  store.discard();
  store.discard();
  assert.equal(store.load(SPIFFE, new Date(), 1000), undefined);
});

test("m3: the join token is optional only with a data dir", () => {
  const base = { VIVIFIED_MANIFEST: "m.yaml", VIVIFIED_CA_FILE: "ca.crt" };
  const settings = settingsFromEnv({ ...base, VIVIFIED_DATA_DIR: "/var/lib/plugin" });
  assert.equal(settings.joinToken, "");
  assert.equal(settings.dataDir, "/var/lib/plugin");
  assert.throws(() => settingsFromEnv(base), (error: Error) => error instanceof ConfigurationError && /VIVIFIED_JOIN_TOKEN/.test(error.message));
});
