import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { ConformanceControl, controlFrom } from "../src/conformance.js";
import { PermissionDeniedError } from "../src/errors.js";
import { settingsFromEnv } from "../src/settings.js";

const records = (path: string) => readFileSync(path, "utf8").trim().split("\n").map((line) => JSON.parse(line));

test("the conformance hook is off unless VIVIFIED_CONFORMANCE_CONTROL names a file", () => {
  const env = { VIVIFIED_MANIFEST: "m.yaml", VIVIFIED_JOIN_TOKEN: "t", VIVIFIED_CA_FILE: "ca.crt" };
  assert.equal(settingsFromEnv(env).conformanceControl, "");
  assert.equal(controlFrom(""), undefined);
  assert.ok(controlFrom(settingsFromEnv({ ...env, VIVIFIED_CONFORMANCE_CONTROL: "/tmp/x" }).conformanceControl) instanceof ConformanceControl);
});

test("suite events get the verdict asked for, others go to the plugin, Init is held by the hold file", () => {
  const path = join(mkdtempSync(join(tmpdir(), "conformance-")), "control.jsonl");
  const control = new ConformanceControl(path);
  assert.equal(control.delivery("user-u-1", "vivified.events.v1.UserCreated", 1), undefined);
  assert.equal(control.delivery("conformance-ack-1", "vivified.events.v1.UserCreated", 1), true);
  assert.equal(control.delivery("conformance-nack-1", "vivified.events.v1.UserCreated", 1), false);
  assert.equal(control.delivery("conformance-nack-1", "vivified.events.v1.UserCreated", 2), true);
  writeFileSync(`${path}.hold-init`, "");
  assert.equal(control.initHeld(), true);
  unlinkSync(`${path}.hold-init`);
  assert.equal(control.initHeld(), false);
  assert.deepEqual(records(path).map((r) => [r.check, r.event_id ?? "", r.attempt ?? 0, r.action]), [
    ["event", "conformance-ack-1", 1, "ack"],
    ["event", "conformance-nack-1", 1, "nack"],
    ["event", "conformance-nack-1", 2, "ack"],
    ["init", "", 0, "refused"],
  ]);
});

test("the error probes record the typed error each refusal became, once", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "conformance-")), "control.jsonl");
  const control = new ConformanceControl(path);
  const targets: string[] = [];
  const probes = {
    call: async (target: string) => {
      targets.push(target);
      throw new PermissionDeniedError("no", { reason: "POLICY_DENIED", domain: "vivified.policy", metadata: { rule_id: "r-1" } });
    },
    fetch: async () => {
      throw new Error("not typed");
    },
  };
  await control.probeErrors(probes);
  await control.probeErrors(probes);
  assert.deepEqual(targets, ["conformance-absent"]);
  const [call, fetch] = records(path);
  assert.deepEqual(call, {
    check: "error", operation: "call", error: "PermissionDeniedError", code: "PERMISSION_DENIED",
    reason: "POLICY_DENIED", domain: "vivified.policy", metadata: { rule_id: "r-1" },
  });
  assert.deepEqual([fetch.operation, fetch.error, fetch.code], ["fetch", "Error", ""]);
});
