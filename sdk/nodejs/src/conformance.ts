/**
 * The conformance suite's control hook (docs/plugin-protocol.md, "Conformance
 * control hook"), off unless `VIVIFIED_CONFORMANCE_CONTROL` names a file —
 * the same hook as the Python SDK's `vivified.sdk._conformance`.
 *
 * When on, the runtime appends one JSON object per line to that file:
 * - for every delivery whose `event_id` starts with `conformance-` (the suite's
 *   own events; the plugin's handlers never see them): `{"check": "event",
 *   "event_id", "event_type", "attempt", "action": "ack" | "nack"}`, nacking the
 *   first delivery of an id starting `conformance-nack-` and acking every other;
 * - while a file named like the control file plus `.hold-init` exists, each
 *   Init is refused (`{"check": "init", "action": "refused"}`), so the suite can
 *   look at the plugin between Register and a successful Init;
 * - once after Init succeeded, for each core refusal it provokes (a call to a
 *   plugin its manifest does not declare, a fetch of a host it may not reach):
 *   `{"check": "error", "operation", "error": <typed error class>, "code",
 *   "reason", "domain", "metadata"}`, read from the typed error the SDK threw.
 */
import { appendFileSync, existsSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";

import { VivifiedError } from "./errors.js";
import type { Message } from "./protos.js";

export const CONTROL_ENV = "VIVIFIED_CONFORMANCE_CONTROL";
export const EVENT_PREFIX = "conformance-";
export const NACK_PREFIX = "conformance-nack-";
export const ABSENT_PLUGIN = "conformance-absent";
export const UNREACHABLE_URL = "https://conformance.invalid/";

export interface ConformanceProbes {
  call(target: string, requestType: string, request: Message): Promise<unknown>;
  fetch(request: { method: string; url: string }): Promise<unknown>;
}

export class ConformanceControl {
  private probed = false;

  constructor(readonly path: string) {}

  record(fields: Record<string, unknown>): void {
    appendFileSync(this.path, `${JSON.stringify(fields)}\n`, { mode: 0o600 });
  }

  /** Whether the suite holds Init back (its `.hold-init` file exists); recorded when it does. */
  initHeld(): boolean {
    const held = existsSync(`${this.path}.hold-init`);
    if (held) this.record({ check: "init", action: "refused" });
    return held;
  }

  /** true (ack) or false (nack) for one of the suite's events; undefined for any other. */
  delivery(eventId: string, eventType: string, attempt: number): boolean | undefined {
    if (!eventId.startsWith(EVENT_PREFIX)) return undefined;
    const ack = !(eventId.startsWith(NACK_PREFIX) && attempt <= 1);
    this.record({ check: "event", event_id: eventId, event_type: eventType, attempt, action: ack ? "ack" : "nack" });
    return ack;
  }

  /** Provoke two core refusals and record the typed error each one became (once per process). */
  async probeErrors(probes: ConformanceProbes): Promise<void> {
    if (this.probed) return;
    this.probed = true;
    const operations: Record<string, () => Promise<unknown>> = {
      call: () =>
        probes.call(ABSENT_PLUGIN, "vivified.communication.v1.GetMessageStatusRequest", { message_id: "conformance" }),
      fetch: () => probes.fetch({ method: "GET", url: UNREACHABLE_URL }),
    };
    for (const [operation, probe] of Object.entries(operations)) {
      try {
        await probe();
        this.record({ check: "error", operation, error: "", code: "OK", reason: "", domain: "", metadata: {} });
      } catch (error) {
        if (error instanceof VivifiedError) {
          this.record({
            check: "error", operation, error: error.constructor.name, code: grpc.status[error.code],
            reason: error.reason, domain: error.domain, metadata: error.metadata,
          });
        } else {
          this.record({ check: "error", operation, error: (error as Error)?.constructor?.name ?? "unknown", code: "", reason: "", domain: "", metadata: {} });
        }
      }
    }
  }
}

export function controlFrom(path: string): ConformanceControl | undefined {
  return path ? new ConformanceControl(path) : undefined;
}
