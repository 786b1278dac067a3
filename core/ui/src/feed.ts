// The REST bridge's server streams (Envoy's grpc_json_transcoder with
// stream_newline_delimited) are newline-delimited JSON: one message per line,
// readable as it arrives through fetch's ReadableStream. A line that is a
// google.rpc.Status (`code`, `message`, no message field) is the stream's end
// with an error.
import { fromJson } from "@bufbuild/protobuf";
import type { DescMessage, JsonValue, MessageShape } from "@bufbuild/protobuf";
import { ApiError } from "./api";

/** Splits text chunks into complete lines; a partial line waits for the next chunk. */
export class LineSplitter {
  private pending = "";

  push(chunk: string): string[] {
    this.pending += chunk;
    const lines = this.pending.split("\n");
    this.pending = lines.pop() ?? "";
    return lines.map((l) => l.trim()).filter((l) => l !== "");
  }

  /** What is left when the stream ends (a last line without its newline). */
  end(): string[] {
    const last = this.pending.trim();
    this.pending = "";
    return last ? [last] : [];
  }
}

interface StatusLine {
  code?: number;
  message?: string;
  details?: { "@type"?: string; reason?: string; metadata?: Record<string, string> }[];
}

/** One line of a feed: a message of `schema`, or the ApiError a status line carries. */
export function parseLine<O extends DescMessage>(schema: O, line: string): MessageShape<O> {
  const value = JSON.parse(line) as JsonValue;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`not a JSON object: ${line.slice(0, 80)}`);
  }
  const status = value as StatusLine;
  if (typeof status.code === "number" && typeof status.message === "string" && schema.fields.every((f) => !(f.jsonName in value))) {
    const info = (status.details ?? []).find((d) => d["@type"] === "type.googleapis.com/google.rpc.ErrorInfo");
    throw new ApiError(200, info?.reason ?? "", info?.metadata?.rule_id ?? "", status.message);
  }
  return fromJson(schema, value, { ignoreUnknownFields: true });
}

/** Every message of a newline-delimited JSON body, as it arrives. */
export async function* readFeed<O extends DescMessage>(
  schema: O, body: ReadableStream<Uint8Array>,
): AsyncGenerator<MessageShape<O>> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const lines = new LineSplitter();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const line of lines.push(decoder.decode(value, { stream: true }))) yield parseLine(schema, line);
    }
    for (const line of lines.push(decoder.decode()).concat(lines.end())) yield parseLine(schema, line);
  } finally {
    reader.releaseLock();
  }
}
