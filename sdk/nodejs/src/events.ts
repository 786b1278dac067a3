/**
 * The canonical lane: publish events, and serve durable subscriptions whose
 * handlers acknowledge by returning and ask for redelivery by throwing.
 *
 *     await runtime.publish("vivified.events.v1.EmailSent", { email_id: "e-1" });
 *     const sub = runtime.subscribe("alerts", {
 *       "vivified.events.v1.SecurityAlert": async (alert, event) => { ... },   // may run more than once
 *     });
 *     await sub.opened();
 */
import { randomUUID } from "node:crypto";

import * as grpc from "@grpc/grpc-js";

import type { ConformanceControl } from "./conformance.js";
import { ConfigurationError, InvalidArgumentError, PermissionDeniedError, UnauthenticatedError, VivifiedError, fromServiceError, fromStatus } from "./errors.js";
import type { Message, Protos } from "./protos.js";

export const EVENT_BUS = "vivified.events.v1.EventBusService";

/** What a handler learns about a delivery besides the payload. */
export interface ReceivedEvent {
  /** The envelope: `event_id`, `source_plugin_id`, `time`, `traceparent`, `classification`. */
  readonly event: Message;
  /** 1 on first delivery, higher on redelivery. */
  readonly attempt: number;
  /** Payload fields the core cleared because this plugin lacks the trait their classification needs. */
  readonly redactedFields: readonly string[];
}

export type EventHandler = (payload: Message, event: ReceivedEvent) => Promise<void> | void;

/** The canonical envelope of `payload`; the core fills in source, time, trace and classification. */
export function envelope(protos: Protos, eventType: string, payload: Message, eventId?: string): Message {
  return { event_id: eventId ?? randomUUID().replaceAll("-", ""), event_type: eventType, payload: protos.pack(eventType, payload) };
}

const FATAL = [PermissionDeniedError, InvalidArgumentError, UnauthenticatedError];
const FATAL_REASONS = new Set(["SUBSCRIPTION_LIMIT"]);

/** Many publishes on one stream; `send` resolves with each event's acknowledgement, in order. */
export class PublishStream {
  private readonly call: grpc.ClientDuplexStream<Message, Message>;
  private readonly waiting: { resolve: (reply: Message) => void; reject: (error: VivifiedError) => void }[] = [];
  private firstError: VivifiedError | null = null;
  /** Why the stream ended, once it has: a later `send` is refused with it instead of waiting for an answer that cannot come. */
  private endedWith: VivifiedError | null = null;
  private readonly ended: Promise<void>;

  constructor(client: grpc.Client, private readonly protos: Protos) {
    this.call = (client as any).PublishStream() as grpc.ClientDuplexStream<Message, Message>;
    this.call.on("data", (answer: Message) => {
      const next = this.waiting.shift();
      if (next === undefined) return;
      if (answer["refusal"]) {
        const r = answer["refusal"];
        const error = fromStatus(r.code, r.message, { reason: r.reason, domain: "vivified.events" });
        this.firstError ??= error;
        next.reject(error);
      } else next.resolve(answer);
    });
    this.ended = new Promise((resolve) => {
      this.call.on("error", (err: grpc.ServiceError) => {
        this.fail(fromServiceError(err, protos));
        resolve();
      });
      this.call.on("end", () => {
        this.fail(new VivifiedError("the publish stream ended before acknowledging every event", { reason: "STREAM_ENDED" }));
        resolve();
      });
    });
  }

  private fail(error: VivifiedError): void {
    this.endedWith ??= error;
    while (this.waiting.length > 0) {
      this.firstError ??= error;
      this.waiting.shift()!.reject(error);
    }
  }

  send(eventType: string, payload: Message, eventId?: string): Promise<Message> {
    return new Promise((resolve, reject) => {
      if (this.endedWith !== null) {
        this.firstError ??= this.endedWith;
        reject(this.endedWith);
        return;
      }
      this.waiting.push({ resolve, reject });
      this.call.write({ event: envelope(this.protos, eventType, payload, eventId) });
    });
  }

  /** Finish sending and wait for every answer; throws the first refusal. */
  async close(): Promise<void> {
    const pending = this.waiting.map((w) => new Promise<void>((resolve) => {
      const { resolve: ok, reject: ko } = w;
      w.resolve = (r) => { ok(r); resolve(); };
      w.reject = (e) => { ko(e); resolve(); };
    }));
    this.call.end();
    await Promise.all(pending);
    await this.ended;
    if (this.firstError !== null) throw this.firstError;
  }
}

/** A durable subscription served in the background until `close()`; reopened after transport errors. */
export class Subscription {
  private openedResolve!: (name: string) => void;
  private openedReject!: (error: VivifiedError) => void;
  private readonly openedPromise: Promise<string>;
  private call: grpc.ClientDuplexStream<Message, Message> | null = null;
  private closed = false;
  private readonly done: Promise<void>;
  private doneError: VivifiedError | null = null;

  constructor(
    private readonly client: () => grpc.Client,
    private readonly protos: Protos,
    readonly name: string,
    private readonly handlers: Readonly<Record<string, EventHandler>>,
    private readonly log: (message: string) => void,
    private readonly control?: ConformanceControl,
  ) {
    if (Object.keys(handlers).length === 0) throw new ConfigurationError("subscribe needs at least one handler", "NO_HANDLERS");
    this.openedPromise = new Promise((resolve, reject) => {
      this.openedResolve = resolve;
      this.openedReject = reject;
    });
    this.openedPromise.catch(() => undefined);
    this.done = this.run();
  }

  /** Resolves with the subscription's full name once the core confirmed it; rejects with a refusal. */
  opened(): Promise<string> {
    return this.openedPromise;
  }

  /** Resolves when the subscription ends; rejects with the refusal that ended it. */
  async waitClosed(): Promise<void> {
    await this.done;
    if (this.doneError !== null) throw this.doneError;
  }

  /** Stop serving; deliveries in flight go back to the core unacknowledged. */
  async close(): Promise<void> {
    this.closed = true;
    this.call?.cancel();
    await this.done;
  }

  private async run(): Promise<void> {
    let delay = 200;
    while (!this.closed) {
      try {
        await this.serveOnce();
        delay = 200;
      } catch (error) {
        const e = error as VivifiedError;
        if (this.closed) return;
        if (FATAL.some((cls) => e instanceof cls) || FATAL_REASONS.has(e.reason)) {
          this.doneError = e;
          this.openedReject(e);
          return;
        }
        this.log(`subscription ${this.name} interrupted (${e.message}); reopening`);
      }
      if (this.closed) return;
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
      delay = Math.min(delay * 2, 5000);
    }
  }

  private serveOnce(): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = (this.client() as any).Subscribe() as grpc.ClientDuplexStream<Message, Message>;
      this.call = call;
      let queue = Promise.resolve();
      call.on("data", (response: Message) => {
        if (response["response"] === "opened") {
          this.openedResolve(response["opened"]["subscription"]);
          return;
        }
        const delivery = response["delivery"];
        // One at a time, in arrival order.
        queue = queue.then(async () => {
          const ok = await this.handle(delivery);
          if (this.closed) return;
          call.write(ok ? { ack: { delivery_ids: [delivery.delivery_id] } } : { nack: { delivery_ids: [delivery.delivery_id] } });
        });
      });
      call.on("error", (err: grpc.ServiceError) => {
        if (this.closed) resolve();
        else reject(fromServiceError(err, this.protos));
      });
      call.on("end", () => resolve());
      call.write({ open: { subscription: this.name, event_types: Object.keys(this.handlers).sort() } });
    });
  }

  private async handle(delivery: Message): Promise<boolean> {
    const event = delivery["event"];
    // The conformance suite's own events are answered by its control hook.
    const verdict = this.control?.delivery(event.event_id, event.event_type, delivery.attempt);
    if (verdict !== undefined) return verdict;
    const handler = this.handlers[event.event_type];
    if (handler === undefined) {
      this.log(`delivery ${delivery.delivery_id} carries ${event.event_type}, which this subscription has no handler for`);
      return false;
    }
    let payload: Message;
    try {
      const unpacked = this.protos.unpack(event.payload);
      if (unpacked.typeName !== event.event_type) throw new Error(`payload is ${unpacked.typeName}`);
      payload = unpacked.value;
    } catch (error) {
      this.log(`delivery ${delivery.delivery_id} carries ${event.payload?.type_url}, not ${event.event_type}`);
      return false;
    }
    try {
      await handler(payload, { event, attempt: delivery.attempt, redactedFields: delivery.redacted_fields ?? [] });
      return true;
    } catch (error) {
      this.log(`handler for ${event.event_type} failed on event ${event.event_id} (attempt ${delivery.attempt}): ${(error as Error)?.message ?? error}`);
      return false;
    }
  }
}
