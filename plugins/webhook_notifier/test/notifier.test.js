// Unit tests of the notifier's logic with a fake egress lane (the e2e test
// tests/plugins/test_webhook_notifier_e2e.py drives it through a real core).
import assert from "node:assert/strict";
import { test } from "node:test";

import { EMAIL_FAILED, SECURITY_ALERT, WebhookNotifier } from "../notifier.js";

function fakeEgress(status = 204) {
  const posted = [];
  return { posted, fetch: async (request) => (posted.push({ ...request, document: JSON.parse(request.body.toString()) }), { status_code: status }) };
}

const quiet = { log: () => undefined };

test("a message is posted once; a reused id returns the earlier status without posting", async () => {
  const egress = fakeEgress();
  const notifier = new WebhookNotifier(egress, quiet);
  notifier.configure("https://hooks.example.com/in");
  const request = { message: { message_id: "m-1", to_address: "ada@example.com", content: "hi" } };
  assert.equal((await notifier.sendMessage(request)).status, "DELIVERY_STATUS_DELIVERED");
  assert.equal((await notifier.sendMessage(request)).status, "DELIVERY_STATUS_DELIVERED");
  assert.equal(egress.posted.length, 1);
  assert.equal(egress.posted[0].url, "https://hooks.example.com/in");
  assert.equal(egress.posted[0].document.to, "ada@example.com");
  assert.equal(notifier.getMessageStatus({ message_id: "m-1" }).status_detail, "webhook answered 204");
});

test("refusals are typed: missing fields, unknown id, no webhook configured", async () => {
  const notifier = new WebhookNotifier(fakeEgress(), quiet);
  await assert.rejects(notifier.sendMessage({ message: { message_id: "x" } }), (e) => e.reason === "INVALID_REQUEST");
  assert.throws(() => notifier.getMessageStatus({ message_id: "nope" }), (e) => e.reason === "MESSAGE_NOT_FOUND");
  await assert.rejects(
    notifier.sendMessage({ message: { message_id: "m", to_address: "a@example.com", content: "c" } }),
    (e) => e.reason === "WEBHOOK_NOT_CONFIGURED",
  );
});

test("events are posted without PII; a webhook error makes the handler throw so the core redelivers", async () => {
  const egress = fakeEgress(200);
  const notifier = new WebhookNotifier(egress, quiet);
  notifier.configure("https://hooks.example.com/in");
  const handlers = notifier.handlers();
  const received = { event: { event_id: "e-1", source_plugin_id: "email-gateway" }, attempt: 1 };
  await handlers[EMAIL_FAILED]({ email_id: "m-9", recipient: "ada@example.com", error_code: "550" }, received);
  assert.equal(egress.posted[0].document.kind, "email_failed");
  assert.ok(!JSON.stringify(egress.posted[0].document).includes("ada@example.com"));
  const failing = new WebhookNotifier(fakeEgress(503), quiet);
  failing.configure("https://hooks.example.com/in");
  await assert.rejects(failing.handlers()[SECURITY_ALERT]({ alert_id: "a" }, received), /503/);
});
