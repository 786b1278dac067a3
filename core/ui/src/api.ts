// Calls to the REST bridge (Envoy's grpc_json_transcoder) on this origin. Every
// request body is built from the generated message schema of the contract
// (gen/ts, from proto/) and every response parsed back through it, so the
// shapes cannot drift from proto/; the paths are the google.api.http routes
// (test/routes.test.ts checks them against proto/).
import { create, fromJson, toJson } from "@bufbuild/protobuf";
import type { DescMessage, JsonValue, MessageInitShape, MessageShape, Registry } from "@bufbuild/protobuf";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly ruleId: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

type Fetch = (input: string, init: RequestInit) => Promise<Response>;

interface ErrorBody {
  code?: number;
  message?: string;
  details?: { "@type"?: string; reason?: string; metadata?: Record<string, string> }[];
}

/** The error a failed response carries: HTTP status, ErrorInfo reason and rule id. */
export async function errorOf(response: Response): Promise<ApiError> {
  let body: ErrorBody = {};
  try {
    body = (await response.json()) as ErrorBody;
  } catch {
    body = {};
  }
  const info = (body.details ?? []).find((d) => d["@type"] === "type.googleapis.com/google.rpc.ErrorInfo");
  return new ApiError(
    response.status,
    info?.reason ?? "",
    info?.metadata?.rule_id ?? "",
    body.message || `${response.status} ${response.statusText}`,
  );
}

export type Verb = "GET" | "POST" | "PUT" | "PATCH";

export interface Route<I extends DescMessage, O extends DescMessage> {
  verb: Verb;
  /** Message types a response's google.protobuf.Any fields may hold (an event's payload). */
  registry?: Registry;
  /** The google.api.http template, e.g. `/v1/plugins/{plugin_id}:disable`. */
  path: string;
  input: I;
  output: O;
}

/** Fills `{field}` path variables from the message; those fields leave the body. */
export function expand(path: string, json: Record<string, JsonValue>, protoNames: Map<string, string>): string {
  return path.replace(/\{([a-z_]+)\}/g, (_, field: string) => {
    const key = protoNames.get(field) ?? field;
    const value = json[key];
    delete json[key];
    if (typeof value !== "string" || value === "") throw new Error(`missing path field ${field}`);
    return encodeURIComponent(value);
  });
}

/** A GET's remaining fields as query parameters, by their proto names (what the transcoder binds). */
export function query(json: Record<string, JsonValue>, protoNames: Map<string, string>): string {
  const byJson = new Map([...protoNames].map(([proto, jsonName]) => [jsonName, proto]));
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(json)) {
    const name = byJson.get(key) ?? key;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === "string" || typeof item === "number" || typeof item === "boolean") params.append(name, String(item));
      else throw new Error(`field ${name} cannot be a query parameter`);
    }
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class Client {
  private token = "";

  constructor(private readonly fetcher: Fetch = (i, init) => fetch(i, init)) {}

  /** The access token lives here, in memory only: never in storage or cookies. */
  setToken(token: string): void {
    this.token = token;
  }

  get signedIn(): boolean {
    return this.token !== "";
  }

  /** A GET route's server stream: the open response, its body newline-delimited JSON (see feed.ts). */
  async open<I extends DescMessage, O extends DescMessage>(
    route: Route<I, O>,
    init: MessageInitShape<I>,
    signal: AbortSignal,
  ): Promise<ReadableStream<Uint8Array>> {
    const json = toJson(route.input, create(route.input, init)) as Record<string, JsonValue>;
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(json)) if (typeof value === "string" && value) query.set(key, value);
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const path = route.path + (query.size ? `?${query.toString()}` : "");
    const response = await this.fetcher(path, { method: "GET", headers, credentials: "omit", cache: "no-store", signal });
    if (!response.ok) throw await errorOf(response);
    if (response.body === null) throw new Error("the stream has no body");
    return response.body;
  }

  async call<I extends DescMessage, O extends DescMessage>(
    route: Route<I, O>,
    init: MessageInitShape<I>,
  ): Promise<MessageShape<O>> {
    const message = create(route.input, init);
    const json = toJson(route.input, message) as Record<string, JsonValue>;
    const names = new Map(route.input.fields.map((f) => [f.name, f.jsonName]));
    let path = expand(route.path, json, names);
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const request: RequestInit = { method: route.verb, headers, credentials: "omit", cache: "no-store" };
    if (route.verb === "GET") path += query(json, names);
    else {
      headers["Content-Type"] = "application/json";
      request.body = JSON.stringify(json);
    }
    const response = await this.fetcher(path, request);
    if (!response.ok) throw await errorOf(response);
    return fromJson(route.output, (await response.json()) as JsonValue, { ignoreUnknownFields: true, registry: route.registry });
  }
}
