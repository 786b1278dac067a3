/**
 * The contracts' generated TypeScript types (gen/ts, protoc-gen-es, imported as
 * `@vivified/gen/...`) in the SDK: a contract implementation whose handlers
 * take and return typed messages, a typed operator-lane call, and typed `Any`
 * packing for events. The wire is the same as the untyped API's; this only
 * swaps the (de)serialisation for the generated schemas.
 *
 *     import { CommunicationPluginService, DeliveryStatus } from "@vivified/gen/vivified/communication/v1/communication_pb.js";
 *     const contract = typedContract(CommunicationPluginService, {
 *       sendMessage: (request) => ({ messageId: request.message?.messageId ?? "", status: DeliveryStatus.DELIVERED }),
 *     });
 *     await run([contract], settingsFromEnv(process.env));
 */
import * as grpc from "@grpc/grpc-js";
import {
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
  create,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";

import { ConfigurationError } from "./errors.js";
import { TYPE_URL_PREFIX } from "./protos.js";
import type { CallContext, Contract, UnaryHandler } from "./server.js";

type Methods<S extends DescService> = S extends { method: infer M } ? M : never;
type Input<M> = M extends { input: infer I extends DescMessage } ? I : never;
type Output<M> = M extends { output: infer O extends DescMessage } ? O : never;

/** One handler per unary method, keyed by the method's local (lowerCamel) name, on the generated types. */
export type TypedHandlers<S extends DescService> = {
  [K in keyof Methods<S>]?: (
    request: MessageShape<Input<Methods<S>[K]>>,
    context: CallContext,
  ) => Promise<MessageInitShape<Output<Methods<S>[K]>>> | MessageInitShape<Output<Methods<S>[K]>>;
};

/** The gRPC definition of a generated service: (de)serialised with its schemas, keyed by proto method name. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.name] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (value) => Buffer.from(toBinary(method.input, create(method.input, value as never))),
      requestDeserialize: (bytes) => fromBinary(method.input, bytes),
      responseSerialize: (value) => Buffer.from(toBinary(method.output, create(method.output, value as never))),
      responseDeserialize: (bytes) => fromBinary(method.output, bytes),
      originalName: method.localName,
    };
  }
  return definition as grpc.ServiceDefinition;
}

/** A `Contract` for `run`/`PluginRuntime` whose handlers use the generated message types (unary methods). */
export function typedContract<S extends DescService>(service: S, handlers: TypedHandlers<S>): Contract {
  const byName: Record<string, UnaryHandler> = {};
  for (const [localName, handler] of Object.entries(handlers as Record<string, unknown>)) {
    const method = service.methods.find((m) => m.localName === localName);
    if (method === undefined || typeof handler !== "function") {
      throw new ConfigurationError(`${service.typeName} has no method ${localName}`, "METHOD_UNKNOWN");
    }
    if (method.methodKind !== "unary") {
      throw new ConfigurationError(`${service.typeName}/${method.name}: typedContract serves unary methods only`, "METHOD_UNSUPPORTED");
    }
    byName[method.name] = handler as unknown as UnaryHandler;
  }
  return { service: service.typeName, handlers: byName, definition: serviceDefinition(service) };
}

/** `google.protobuf.Any` (the SDK's plain shape) holding a generated message; the type URL is `type.googleapis.com/<type>`. */
export function packMessage<D extends DescMessage>(schema: D, message: MessageInitShape<D>): { type_url: string; value: Buffer } {
  return { type_url: TYPE_URL_PREFIX + schema.typeName, value: Buffer.from(toBinary(schema, create(schema, message))) };
}

/** The generated message in an `Any`; throws unless its type URL is `type.googleapis.com/<schema's type>`. */
export function unpackMessage<D extends DescMessage>(schema: D, any: { type_url: string; value: Uint8Array }): MessageShape<D> {
  if (any.type_url !== TYPE_URL_PREFIX + schema.typeName) {
    throw new ConfigurationError(`type_url ${any.type_url} is not ${TYPE_URL_PREFIX}${schema.typeName}`, "TYPE_URL_MISMATCH");
  }
  return fromBinary(schema, any.value);
}

/** The path, and the request/response codecs, of a generated unary method (for `PluginRuntime.callMethod`). */
export function methodCodec<I extends DescMessage, O extends DescMessage>(method: DescMethod & { input: I; output: O }) {
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    encode: (request: MessageInitShape<I>): Buffer => Buffer.from(toBinary(method.input, create(method.input, request))),
    decode: (bytes: Uint8Array): MessageShape<O> => fromBinary(method.output, bytes),
  };
}
