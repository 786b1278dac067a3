/** A renewal's trust bundle (CA rotation) reaches the plugin's server: the certificate provider
 * announces new roots to gRPC, and only when they changed. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { IssuedCertificate } from "../src/identity.js";
import { MemoryCertificateProvider } from "../src/transport.js";
import { TestCA } from "./ca.js";

test("install with a renewal's bundle replaces the roots the plugin's server verifies the core against", async () => {
  const oldCa = await TestCA.create();
  const nextCa = await TestCA.create();
  const leaf = await oldCa.leaf({ uri: ["spiffe://vivified.local/plugin/demo"], dns: ["demo.plugin.vivified.local"] });
  const issued = Object.assign(Object.create(IssuedCertificate.prototype), { chainPem: leaf.certPem, keyPem: leaf.keyPem });
  const provider = new MemoryCertificateProvider(Buffer.from(oldCa.rootPem));
  const seen: string[] = [];
  provider.addCaCertificateListener((update) => seen.push(update?.caCertificate.toString() ?? ""));
  assert.deepEqual(seen, [oldCa.rootPem]);
  provider.install(issued, Buffer.from(oldCa.rootPem));
  assert.equal(seen.length, 1, "an unchanged bundle is not announced again");
  const bundle = oldCa.rootPem + nextCa.rootPem;
  provider.install(issued, Buffer.from(bundle));
  assert.deepEqual(seen, [oldCa.rootPem, bundle]);
  provider.install(issued);
  assert.equal(seen.length, 2, "no bundle given: the roots stay");
});
