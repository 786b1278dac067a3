import assert from "node:assert/strict";
import { test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { ResourceExhaustedError } from "../src/errors.js";
import { EVENT_BUS, PublishStream } from "../src/events.js";
import { protosFor } from "../src/protos.js";

const protos = protosFor();

/** A loopback event bus whose PublishStream reads one event, then ends the stream refusing with RESOURCE_EXHAUSTED. */
async function refusingBus(): Promise<{ client: grpc.Client; stop: () => void }> {
  const server = new grpc.Server();
  server.addService(protos.service(EVENT_BUS), {
    PublishStream: (call: grpc.ServerDuplexStream<any, any>) => {
      call.once("data", () => call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: "publish rate exceeded" }));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    // Loopback and insecure: the stream's bookkeeping is under test, not TLS.
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const Client = protos.client(EVENT_BUS);
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return { client, stop: () => { client.close(); server.forceShutdown(); } };
}

const within = <T>(promise: Promise<T>, ms: number): Promise<T> =>
  Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms))]);

test("a send after the core ended the publish stream is refused with the stream's error instead of hanging", async () => {
  const { client, stop } = await refusingBus();
  try {
    const stream = new PublishStream(client, protos);
    await assert.rejects(within(stream.send("vivified.events.v1.UserCreated", { user_id: "u-1" }), 5000), ResourceExhaustedError);
    // The stream is over: this event cannot be answered, so it must not wait for an answer.
    await assert.rejects(within(stream.send("vivified.events.v1.UserCreated", { user_id: "u-2" }), 5000), ResourceExhaustedError);
    await assert.rejects(within(stream.close(), 5000), ResourceExhaustedError);
  } finally {
    stop();
  }
});
