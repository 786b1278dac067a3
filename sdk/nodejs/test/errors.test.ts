import assert from "node:assert/strict";
import { test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { PermissionDeniedError, UnavailableError, VivifiedError, fromServiceError, statusMetadata, toStatusObject } from "../src/errors.js";
import { protosFor } from "../src/protos.js";

const protos = protosFor();

test("a core refusal becomes the typed error with reason, domain and rule id", () => {
  const metadata = statusMetadata(protos, grpc.status.PERMISSION_DENIED, "no rule allows this call", {
    reason: "POLICY_DENIED",
    domain: "vivified.policy",
    metadata: { rule_id: "default-deny" },
  });
  const error = fromServiceError({ code: grpc.status.PERMISSION_DENIED, details: "x", metadata }, protos);
  assert.ok(error instanceof PermissionDeniedError);
  assert.equal(error.reason, "POLICY_DENIED");
  assert.equal(error.domain, "vivified.policy");
  assert.equal(error.ruleId, "default-deny");
  assert.equal(error.message, "no rule allows this call");
  assert.equal(String(error), "PERMISSION_DENIED [vivified.policy/POLICY_DENIED]: no rule allows this call");
});

test("a transport failure carries no reason", () => {
  const error = fromServiceError({ code: grpc.status.UNAVAILABLE, details: "connection refused", metadata: new grpc.Metadata() }, protos);
  assert.ok(error instanceof UnavailableError);
  assert.equal(error.reason, "");
});

test("a rich status whose code disagrees with the call's is not trusted", () => {
  const metadata = statusMetadata(protos, grpc.status.OK, "fine", { reason: "FORGED", domain: "x" });
  const error = fromServiceError({ code: grpc.status.PERMISSION_DENIED, details: "denied", metadata }, protos);
  assert.equal(error.reason, "");
  assert.equal(error.message, "denied");
});

test("a handler's typed error keeps its code and ErrorInfo; anything else is a bare INTERNAL", () => {
  const sent = toStatusObject(protos, new PermissionDeniedError("no", { reason: "NOPE", domain: "vivified.test" }));
  assert.equal(sent.code, grpc.status.PERMISSION_DENIED);
  const back = fromServiceError({ code: sent.code!, details: sent.details!, metadata: sent.metadata! }, protos);
  assert.equal(back.reason, "NOPE");
  const internal = toStatusObject(protos, new Error("secret database password in here"));
  assert.equal(internal.code, grpc.status.INTERNAL);
  assert.ok(!String(internal.details).includes("secret"));
  assert.ok(new VivifiedError("x") instanceof Error);
});
