// The live feed's parser: newline-delimited JSON split across arbitrary chunks,
// parsed through the contract's schema; a status line ends the feed with its
// ErrorInfo reason.
import { WatchAuditRecordsResponseSchema } from "@gen/vivified/admin/v1/audit_query_pb.js";
import { ApiError, Client } from "../src/api";
import { LineSplitter, parseLine, readFeed } from "../src/feed";
import { routes } from "../src/routes";

const RECORD = (seq: number) =>
  JSON.stringify({ record: { seq: String(seq), actor: "user:usr_1", action: "/x.v1.S/M", decision: "allow", outcome: "OK" } });

function body(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

describe("LineSplitter", () => {
  it("keeps a partial line for the next chunk and skips blank lines", () => {
    const lines = new LineSplitter();
    expect(lines.push('{"a":1}\n{"b"')).toEqual(['{"a":1}']);
    expect(lines.push(':2}\n\n{"c":3}')).toEqual(['{"b":2}']);
    expect(lines.end()).toEqual(['{"c":3}']);
    expect(lines.end()).toEqual([]);
  });
});

describe("readFeed", () => {
  it("yields each record however the bytes are chunked", async () => {
    const text = `${RECORD(7)}\n${RECORD(8)}\n${RECORD(9)}\n`;
    const chunks = [text.slice(0, 5), text.slice(5, 60), text.slice(60, 61), text.slice(61)];
    const seen: bigint[] = [];
    for await (const message of readFeed(WatchAuditRecordsResponseSchema, body(chunks))) seen.push(message.record!.seq);
    expect(seen).toEqual([7n, 8n, 9n]);
  });

  it("splits a multi-byte character across chunks without corrupting it", async () => {
    const line = JSON.stringify({ record: { seq: "1", actor: "user:zoë" } }) + "\n";
    const bytes = new TextEncoder().encode(line);
    const cut = bytes.indexOf(0xc3) + 1;
    const stream = new ReadableStream<Uint8Array>({
      start(c) { c.enqueue(bytes.slice(0, cut)); c.enqueue(bytes.slice(cut)); c.close(); },
    });
    const out = [];
    for await (const m of readFeed(WatchAuditRecordsResponseSchema, stream)) out.push(m.record!.actor);
    expect(out).toEqual(["user:zoë"]);
  });

  it("ends with an ApiError carrying the reason when the stream's last line is a status", async () => {
    const status = JSON.stringify({
      code: 8, message: "this watcher read too slowly",
      details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "SUBSCRIBER_TOO_SLOW", metadata: {} }],
    });
    const seen: bigint[] = [];
    const error = await (async () => {
      for await (const m of readFeed(WatchAuditRecordsResponseSchema, body([`${RECORD(1)}\n${status}\n`]))) seen.push(m.record!.seq);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([1n]);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).reason).toBe("SUBSCRIBER_TOO_SLOW");
  });

  it("refuses a line that is not a JSON object", () => {
    expect(() => parseLine(WatchAuditRecordsResponseSchema, "[1,2]")).toThrow(/not a JSON object/);
  });
});

describe("Client.open", () => {
  it("sends the filters as query parameters with the bearer token", async () => {
    const seen: { url: string; init: RequestInit }[] = [];
    const client = new Client(async (url, init) => {
      seen.push({ url, init });
      return new Response(`${RECORD(3)}\n`, { status: 200, headers: { "content-type": "application/json" } });
    });
    client.setToken("t0k");
    const stream = await client.open(routes.watchAuditRecords, { outcome: "PERMISSION_DENIED", actionPrefix: "/vivified." },
      new AbortController().signal);
    expect(seen[0].url).toBe("/v1/audit/records:watch?outcome=PERMISSION_DENIED&actionPrefix=%2Fvivified.");
    expect((seen[0].init.headers as Record<string, string>).Authorization).toBe("Bearer t0k");
    const got = [];
    for await (const m of readFeed(WatchAuditRecordsResponseSchema, stream)) got.push(m.record!.seq);
    expect(got).toEqual([3n]);
  });

  it("turns a refusal into an ApiError before any stream", async () => {
    const client = new Client(async () => new Response(JSON.stringify({
      code: 7, message: "denied",
      details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "POLICY_DENIED", metadata: { rule_id: "user-audit-query" } }],
    }), { status: 403, headers: { "content-type": "application/json" } }));
    const error = await client.open(routes.watchAuditRecords, {}, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect([(error as ApiError).status, (error as ApiError).reason, (error as ApiError).ruleId]).toEqual([403, "POLICY_DENIED", "user-audit-query"]);
  });
});
