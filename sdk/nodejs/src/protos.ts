/**
 * The contracts, loaded straight from the repository's `proto/` directory at
 * run time (no generated code): `@grpc/proto-loader` for services and stubs,
 * `protobufjs` for `google.protobuf.Any` payloads and rich error details.
 *
 * Messages are plain objects with the proto field names (`snake_case`),
 * enums as their value names, 64-bit integers as strings, bytes as Buffers.
 */
import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

/** A decoded message: proto field names to values. */
export type Message = Record<string, any>;

/** The `type_url` prefix the core requires on every `Any`. */
export const TYPE_URL_PREFIX = "type.googleapis.com/";

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};
const CONVERSION: protobuf.IConversionOptions = { longs: String, enums: String, bytes: Buffer as any, defaults: true, oneofs: true };

/** `proto/` of the repository this SDK lives in (`sdk/nodejs/dist/src` → `proto`). */
export function defaultProtoDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "proto");
}

function protoFiles(root: string): string[] {
  const found: string[] = [];
  const walk = (relative: string): void => {
    for (const name of readdirSync(join(root, relative)).sort()) {
      const path = relative ? `${relative}/${name}` : name;
      if (statSync(join(root, path)).isDirectory()) walk(path);
      else if (name.endsWith(".proto")) found.push(path);
    }
  };
  walk("vivified");
  return [...found, "grpc/health/v1/health.proto", "google/rpc/status.proto", "google/rpc/error_details.proto"];
}

/** Every contract of the platform, loaded once per process. */
export class Protos {
  readonly protoDir: string;
  readonly definition: protoLoader.PackageDefinition;
  private readonly root: protobuf.Root;
  private readonly grpcObject: grpc.GrpcObject;

  constructor(protoDir: string = defaultProtoDir()) {
    this.protoDir = protoDir;
    const files = protoFiles(protoDir);
    this.definition = protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [protoDir] });
    this.grpcObject = grpc.loadPackageDefinition(this.definition);
    const root = new protobuf.Root();
    root.resolvePath = (_origin: string, target: string): string =>
      target.startsWith("google/protobuf/") ? target : join(protoDir, target);
    root.loadSync(files, { keepCase: true });
    root.resolveAll();
    this.root = root;
  }

  /** The service definition of `fullName` (e.g. `vivified.communication.v1.CommunicationPluginService`). */
  service(fullName: string): grpc.ServiceDefinition {
    const found = this.definition[fullName] as grpc.ServiceDefinition | undefined;
    if (found === undefined || typeof (found as any).format === "string") {
      throw new Error(`no service ${fullName} under ${this.protoDir}`);
    }
    return found;
  }

  /** The generated client constructor of a service. */
  client(fullName: string): grpc.ServiceClientConstructor {
    let node: any = this.grpcObject;
    for (const part of fullName.split(".")) node = node?.[part];
    if (typeof node !== "function") throw new Error(`no service ${fullName} under ${this.protoDir}`);
    return node as grpc.ServiceClientConstructor;
  }

  /** Whether a message type of this name exists. */
  hasType(fullName: string): boolean {
    try {
      this.root.lookupType(fullName);
      return true;
    } catch {
      return false;
    }
  }

  encode(typeName: string, value: Message): Buffer {
    const type = this.root.lookupType(typeName);
    return Buffer.from(type.encode(type.fromObject(value)).finish());
  }

  decode(typeName: string, bytes: Uint8Array): Message {
    const type = this.root.lookupType(typeName);
    return type.toObject(type.decode(bytes), CONVERSION);
  }

  /** `google.protobuf.Any` holding `value` as `typeName`; the type URL is `type.googleapis.com/<typeName>`. */
  pack(typeName: string, value: Message): { type_url: string; value: Buffer } {
    return { type_url: TYPE_URL_PREFIX + typeName, value: this.encode(typeName, value) };
  }

  /** The type name and decoded value of an `Any`; throws when the type URL is not `type.googleapis.com/<known type>`. */
  unpack(any: { type_url: string; value: Uint8Array }): { typeName: string; value: Message } {
    if (!any.type_url.startsWith(TYPE_URL_PREFIX)) throw new Error(`type_url ${any.type_url} lacks ${TYPE_URL_PREFIX}`);
    const typeName = any.type_url.slice(TYPE_URL_PREFIX.length);
    return { typeName, value: this.decode(typeName, any.value) };
  }

  /** The unary contract method whose input is `requestType` (one request type per RPC). */
  methodFor(requestType: string): { service: string; method: string; path: string; responseType: string } {
    const found: { service: string; method: string; path: string; responseType: string }[] = [];
    const visit = (node: protobuf.ReflectionObject): void => {
      if (node instanceof protobuf.Service) {
        const service = node.fullName.replace(/^\./, "");
        for (const method of node.methodsArray) {
          method.resolve();
          if (method.requestStream || method.responseStream) continue;
          if (method.resolvedRequestType?.fullName.replace(/^\./, "") !== requestType) continue;
          found.push({
            service,
            method: method.name,
            path: `/${service}/${method.name}`,
            responseType: method.resolvedResponseType!.fullName.replace(/^\./, ""),
          });
        }
      }
      if (node instanceof protobuf.Namespace) for (const child of node.nestedArray) visit(child);
    };
    visit(this.root);
    if (found.length !== 1) {
      throw new Error(`${requestType} is the input of ${found.length} unary contract methods; pass the method explicitly`);
    }
    return found[0]!;
  }
}

let shared: Protos | undefined;
let sharedDir: string | undefined;

/** One `Protos` per process and directory (loading them takes a few hundred milliseconds). */
export function protosFor(protoDir: string = defaultProtoDir()): Protos {
  if (shared === undefined || sharedDir !== protoDir) {
    shared = new Protos(protoDir);
    sharedDir = protoDir;
  }
  return shared;
}
