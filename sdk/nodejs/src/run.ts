/** `run`: the entry point of a plugin process. */
import type { Contract } from "./server.js";
import { PluginRuntime, type RuntimeOptions } from "./runtime.js";
import type { PluginSettings } from "./settings.js";

/**
 * Register, serve until SIGTERM/SIGINT or the core's Shutdown, then stop
 * gracefully and resolve (exit 0). Startup errors and an unrecoverable
 * failure (e.g. the certificate expired) reject, so the process exits
 * non-zero and a supervisor restarts it.
 *
 *     await run([{ service: "vivified.communication.v1.CommunicationPluginService", handlers }], settingsFromEnv(process.env));
 */
export async function run(contracts: readonly Contract[], settings: PluginSettings, options: RuntimeOptions = {}): Promise<PluginRuntime> {
  const runtime = new PluginRuntime(contracts, settings, options);
  const received: string[] = [];
  let onSignal = (_name: string): void => undefined;
  const requested = new Promise<void>((resolve) => {
    onSignal = (name) => {
      received.push(name);
      resolve();
    };
  });
  const handlers = { SIGTERM: () => onSignal("SIGTERM"), SIGINT: () => onSignal("SIGINT") };
  process.on("SIGTERM", handlers.SIGTERM);
  process.on("SIGINT", handlers.SIGINT);
  try {
    // A signal during start() is acted on once start() returns: a half-registered plugin would leave the core waiting for its Init.
    await runtime.start();
    await Promise.race([requested, runtime.waitClosed()]);
  } finally {
    await runtime.stop(received[0] ?? "shutdown");
    process.off("SIGTERM", handlers.SIGTERM);
    process.off("SIGINT", handlers.SIGINT);
  }
  if (runtime.failure !== null) throw runtime.failure;
  return runtime;
}
