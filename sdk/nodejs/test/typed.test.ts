import assert from "node:assert/strict";
import { test } from "node:test";

import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  CommunicationPluginService,
  DeliveryStatus,
  SendMessageRequestSchema,
} from "@vivified/gen/vivified/communication/v1/communication_pb.js";
import { SecurityAlertSchema, Severity } from "@vivified/gen/vivified/events/v1/canonical_pb.js";

import { protosFor } from "../src/protos.js";
import { implementation } from "../src/server.js";
import { methodCodec, packMessage, typedContract, unpackMessage } from "../src/typed.js";

const protos = protosFor();

test("generated types and the proto-loader objects put the same bytes on the wire", () => {
  const typed = toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, { message: { messageId: "m-1", subject: "hi" } }));
  const plain = protos.encode("vivified.communication.v1.SendMessageRequest", { message: { message_id: "m-1", subject: "hi" } });
  assert.deepEqual(Buffer.from(typed), plain);
});

test("a typed contract is served on the generated schemas and answers an untyped client", async () => {
  const seen: string[] = [];
  const contract = typedContract(CommunicationPluginService, {
    sendMessage: (request) => {
      seen.push(request.message?.messageId ?? "");
      return { messageId: request.message?.messageId ?? "", status: DeliveryStatus.DELIVERED };
    },
  });
  assert.equal(contract.service, "vivified.communication.v1.CommunicationPluginService");
  const server = new grpc.Server();
  server.addService(contract.definition!, implementation(protos, contract.definition!, contract.handlers, contract.service));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  try {
    const Client = protos.client(contract.service);
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
    const call = (method: string, request: object) =>
      new Promise<any>((resolve, reject) => client[method](request, (err: Error | null, reply: any) => (err ? reject(err) : resolve(reply))));
    const reply = await call("SendMessage", { message: { message_id: "m-7" } });
    assert.deepEqual([reply.message_id, reply.status], ["m-7", "DELIVERY_STATUS_DELIVERED"]);
    assert.deepEqual(seen, ["m-7"]);
    // A method without a handler is UNIMPLEMENTED, as for an untyped contract.
    await assert.rejects(call("GetMessageStatus", { message_id: "m-7" }), (err: grpc.ServiceError) => err.code === grpc.status.UNIMPLEMENTED);
    client.close();
  } finally {
    server.forceShutdown();
  }
});

test("a typed contract refuses a method its service does not have", () => {
  assert.throws(() => typedContract(CommunicationPluginService, { sendEmail: () => ({}) } as never), /has no method sendEmail/);
});

test("events pack as Any with the type.googleapis.com/ URL and unpack only as their own type", () => {
  const any = packMessage(SecurityAlertSchema, { alertId: "a-1", severity: Severity.WARNING, summary: "x" });
  assert.equal(any.type_url, "type.googleapis.com/vivified.events.v1.SecurityAlert");
  // The untyped side reads the same payload.
  assert.deepEqual(
    [protos.unpack(any).value["alert_id"], protos.unpack(any).value["severity"]],
    ["a-1", "SEVERITY_WARNING"],
  );
  assert.equal(unpackMessage(SecurityAlertSchema, any).alertId, "a-1");
  assert.throws(() => unpackMessage(SendMessageRequestSchema, any), /is not type.googleapis.com\/vivified.communication.v1.SendMessageRequest/);
});

test("a generated method gives the call's path and codecs", () => {
  const codec = methodCodec(CommunicationPluginService.method.getMessageStatus);
  assert.equal(codec.path, "/vivified.communication.v1.CommunicationPluginService/GetMessageStatus");
  const bytes = protos.encode("vivified.communication.v1.GetMessageStatusResponse", { message_id: "m-2", status: "DELIVERY_STATUS_FAILED" });
  const decoded = codec.decode(bytes);
  assert.deepEqual([decoded.messageId, decoded.status], ["m-2", DeliveryStatus.FAILED]);
});
