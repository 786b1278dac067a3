// @ts-check
/**
 * `node plugins/webhook_notifier/main.js`: run the webhook notifier against
 * the core named by the VIVIFIED_* environment (the same variables as the
 * Python SDK). Exits 0 after a graceful stop (SIGTERM, SIGINT, the core's
 * Shutdown) and 1 when it cannot start or fails, so a supervisor restarts it.
 */
import { PluginRuntime, VivifiedError, settingsFromEnv } from "@vivified/sdk";

import { WebhookNotifier } from "./notifier.js";

async function main() {
  const settings = settingsFromEnv(process.env);
  /** @type {PluginRuntime | undefined} */
  let runtime;
  const notifier = new WebhookNotifier({ fetch: (request) => /** @type {PluginRuntime} */ (runtime).fetch(request) });
  runtime = new PluginRuntime([notifier.contract()], settings, {
    onInit: async () => {
      const rt = /** @type {PluginRuntime} */ (runtime);
      notifier.configure((await rt.config()).values["webhook_url"] ?? "");
      // Later changes by an administrator apply without a restart.
      void (async () => {
        try {
          for await (const config of rt.watchConfig()) notifier.configure(config.values["webhook_url"] ?? "");
        } catch (error) {
          process.stderr.write(`webhook-notifier: config watch ended: ${error}\n`);
        }
      })();
      const subscription = rt.subscribe("notify", notifier.handlers());
      subscription.opened().catch((error) => {
        process.stderr.write(`webhook-notifier: subscription refused: ${error}\n`);
        void rt.stop("subscription refused");
      });
    },
  });
  // A signal during start() is acted on once start() returns: a half-registered
  // plugin would leave the core waiting for its Init.
  let started = false;
  let requested = "";
  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => {
      requested ||= signal;
      if (started) void runtime?.stop(signal);
    });
  }
  await runtime.start();
  started = true;
  if (requested) void runtime.stop(requested);
  await runtime.waitClosed();
  if (runtime.failure !== null) throw runtime.failure;
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`webhook-notifier: ${error instanceof VivifiedError ? error.toString() : error?.stack ?? error}\n`);
    process.exit(1);
  },
);
