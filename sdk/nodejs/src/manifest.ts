/**
 * The plugin's manifest, read the way the core reads it: YAML 1.2 core schema
 * (or JSON), no duplicate keys, no anchors/aliases, no merge keys. The core
 * approves a manifest by its sha256, so the message sent in Register must be
 * the one the operator approved; unknown keys are refused here, not dropped.
 */
import { readFileSync } from "node:fs";

import { parse } from "yaml";

import { ConfigurationError } from "./errors.js";
import type { Message, Protos } from "./protos.js";

const MAX_BYTES = 64 * 1024;

export function loadManifest(path: string, protos: Protos): Message {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigurationError(`cannot read the manifest ${path}: ${(error as Error).message}`, "MANIFEST_INVALID");
  }
  if (Buffer.byteLength(text) > MAX_BYTES) throw new ConfigurationError(`the manifest ${path} is larger than 64 KiB`, "MANIFEST_INVALID");
  let data: unknown;
  try {
    data = parse(text, { schema: "core", uniqueKeys: true, merge: false, maxAliasCount: 0 });
  } catch (error) {
    throw new ConfigurationError(`the manifest ${path} is not valid YAML: ${(error as Error).message}`, "MANIFEST_INVALID");
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigurationError(`the manifest ${path} is not a mapping`, "MANIFEST_INVALID");
  }
  const encoded = protos.encode("vivified.manifest.v1.PluginManifest", data as Message);
  const message = protos.decode("vivified.manifest.v1.PluginManifest", encoded);
  const known = new Set(Object.keys(message));
  const unknown = Object.keys(data).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new ConfigurationError(`the manifest ${path} has unknown keys: ${unknown.join(", ")}`, "MANIFEST_INVALID");
  return message;
}
