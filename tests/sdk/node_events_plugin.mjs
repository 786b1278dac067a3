// @ts-check
/**
 * A Node.js plugin for tests/sdk/test_node_sdk_events_e2e.py, run with the
 * built SDK (sdk/nodejs/dist) and the SDK's VIVIFIED_* environment. Once the
 * core initialised it, it publishes one EmailSent with `publish` and three on
 * one `publishStream`, publishes a SecurityAlert its manifest does not declare
 * (once each way), and subscribes to UserCreated, throwing on the first
 * delivery of each event (a nack) and returning on the next (an ack).
 *
 * It starts once the file EVENTS_GO exists (the test creates it when the core
 * reports the plugin healthy, so nothing races the core's Init).
 *
 * Every outcome is appended as one JSON line to EVENTS_OUT, for the test to read:
 *   {"step": "publish", ...ack} | {"step": "stream", "acks": [...]}
 *   {"step": "refused", "via": "publish"|"stream", ...error} | {"step": "opened"}
 *   {"step": "delivery", "event_id", "attempt", "user_id"} | {"step": "failed", ...}
 */
import { appendFileSync, existsSync } from "node:fs";

import { NotFoundError, PermissionDeniedError, PluginRuntime, VivifiedError, settingsFromEnv } from "../../sdk/nodejs/dist/src/index.js";

const OUT = process.env["EVENTS_OUT"] ?? "";
const GO = process.env["EVENTS_GO"] ?? "";
const EMAIL_SENT = "vivified.events.v1.EmailSent";
const USER_CREATED = "vivified.events.v1.UserCreated";
const SECURITY_ALERT = "vivified.events.v1.SecurityAlert";

/** @param {Record<string, unknown>} record */
function emit(record) {
  appendFileSync(OUT, JSON.stringify(record) + "\n");
}

/** @param {unknown} error */
function described(error) {
  if (!(error instanceof VivifiedError)) return { name: String(error) };
  return {
    name: error.name,
    permissionDenied: error instanceof PermissionDeniedError,
    code: error.code,
    reason: error.reason,
    domain: error.domain,
    ruleId: error.ruleId,
    message: error.message,
  };
}

/** @param {PluginRuntime} runtime */
async function exercise(runtime) {
  const ack = await runtime.publish(EMAIL_SENT, { email_id: "node-unary", provider_message_id: "pm-unary", user_id: "u-unary" }, { eventId: "node-unary-1" });
  emit({ step: "publish", event_id: ack["event_id"], position: ack["position"], duplicate: ack["duplicate"] });

  const stream = runtime.publishStream();
  const sent = [1, 2, 3].map((i) =>
    stream.send(EMAIL_SENT, { email_id: `node-stream-${i}`, provider_message_id: `pm-${i}`, user_id: `u-${i}` }, `node-stream-${i}`),
  );
  await stream.close();
  const acks = await Promise.all(sent);
  emit({ step: "stream", acks: acks.map((a) => ({ event_id: a["event_id"], position: a["position"], duplicate: a["duplicate"] })) });

  try {
    await runtime.publish(SECURITY_ALERT, { alert_id: "a-1", kind: "test", summary: "not declared" }, { eventId: "node-undeclared-unary" });
    emit({ step: "failed", why: "an undeclared publish was accepted" });
  } catch (error) {
    emit({ step: "refused", via: "publish", ...described(error) });
  }

  const refusing = runtime.publishStream();
  const refused = refusing.send(SECURITY_ALERT, { alert_id: "a-2", kind: "test", summary: "not declared" }, "node-undeclared-stream");
  refused.catch(() => undefined);
  let closeError = null;
  try {
    await refusing.close();
  } catch (error) {
    closeError = error;
  }
  try {
    await refused;
    emit({ step: "failed", why: "an undeclared streamed publish was accepted" });
  } catch (error) {
    emit({ step: "refused", via: "stream", ...described(error), closeRaisedIt: closeError === error });
  }

  const subscription = runtime.subscribe("node-users", {
    [USER_CREATED]: async (payload, event) => {
      emit({ step: "delivery", event_id: event.event["event_id"], attempt: event.attempt, user_id: payload["user_id"] });
      if (event.attempt === 1) throw new Error("first delivery refused on purpose");
    },
  });
  await subscription.opened();
  emit({ step: "opened" });
}

async function main() {
  const runtime = new PluginRuntime(
    [
      {
        service: "vivified.storage.v1.StoragePluginService",
        handlers: {
          RetrieveObject: async () => {
            throw new NotFoundError("this plugin stores nothing", { reason: "OBJECT_NOT_FOUND", domain: "vivified.storage" });
          },
        },
      },
    ],
    settingsFromEnv(process.env),
  );
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => void runtime.stop(signal));
  await runtime.start();
  while (!existsSync(GO) && !runtime.closed) await new Promise((resolve) => setTimeout(resolve, 20));
  exercise(runtime).catch((error) => emit({ step: "failed", why: String(error?.stack ?? error), ...described(error) }));
  await runtime.waitClosed();
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`node-events-plugin: ${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
