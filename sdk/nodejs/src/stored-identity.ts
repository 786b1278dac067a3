/**
 * The plugin's key and certificate kept in its data dir, so a restarted
 * process resumes its registration (`PluginRegistryService/Resume`) instead
 * of needing a new join token. The same file as the Python SDK's
 * (docs/plugin-protocol.md §7): `<dataDir>/vivified-identity.json`, mode
 * 0600, written to a temporary file and renamed over the old one:
 *
 *     {"format": 1, "spiffe_id", "key_pem", "chain_pem", "roots_pem", "received_at", "core_address"}
 *
 * Written after Register and every renewal; removed on stop (which
 * deregisters) and when the core refuses to resume with it for good.
 */
import { randomUUID } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

import { VivifiedError } from "./errors.js";
import { type IssuedCertificate, loadIssued } from "./identity.js";

export const IDENTITY_FILE = "vivified-identity.json";
const FORMAT = 1;

export interface StoredIdentity {
  readonly issued: IssuedCertificate;
  readonly rootsPem: Buffer;
  /** The mTLS address the plugin used ("" when not recorded). */
  readonly coreAddress: string;
}

export class IdentityStore {
  readonly path: string;

  constructor(dataDir: string, private readonly log: (message: string) => void) {
    this.path = join(dataDir, IDENTITY_FILE);
  }

  /** Replace the stored identity atomically (mode 0600 from creation). */
  save(spiffeId: string, issued: IssuedCertificate, rootsPem: Buffer, coreAddress: string): void {
    const document = JSON.stringify({
      format: FORMAT,
      spiffe_id: spiffeId,
      key_pem: issued.keyPem,
      chain_pem: issued.chainPem,
      roots_pem: rootsPem.toString(),
      received_at: issued.receivedAt.toISOString(),
      core_address: coreAddress,
    });
    mkdirSync(join(this.path, ".."), { recursive: true, mode: 0o700 });
    const temporary = join(this.path, "..", `.vivified-identity-${randomUUID()}`);
    const fd = openSync(temporary, "wx", 0o600);
    try {
      writeSync(fd, document);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(temporary, this.path);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw error;
    }
  }

  /** The stored identity of `spiffeId`, usable for at least `marginMs` more; else undefined (an unusable file is removed). */
  load(spiffeId: string, now: Date, marginMs: number): StoredIdentity | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      return this.unusable(`cannot be read (${(error as Error).message})`);
    }
    let stored: StoredIdentity;
    try {
      const document = JSON.parse(text) as Record<string, unknown>;
      if (document["format"] !== FORMAT) return this.unusable(`has format ${String(document["format"])}, not ${FORMAT}`);
      if (document["spiffe_id"] !== spiffeId) return this.unusable(`belongs to ${String(document["spiffe_id"])}, not ${spiffeId}`);
      const receivedAt = new Date(String(document["received_at"]));
      if (Number.isNaN(receivedAt.getTime())) return this.unusable("has no valid received_at");
      stored = {
        issued: loadIssued(String(document["chain_pem"]), String(document["key_pem"]), spiffeId, receivedAt),
        rootsPem: Buffer.from(String(document["roots_pem"])),
        coreAddress: typeof document["core_address"] === "string" ? document["core_address"] : "",
      };
    } catch (error) {
      return this.unusable(error instanceof VivifiedError ? error.message : `is malformed (${(error as Error).message})`);
    }
    if (stored.issued.notAfter.getTime() - marginMs <= now.getTime()) {
      return this.unusable(`holds a certificate that expired or expires at ${stored.issued.notAfter.toISOString()}`);
    }
    return stored;
  }

  private unusable(why: string): undefined {
    this.log(`stored identity ${this.path} ${why}; removing it (a join token is needed to register again)`);
    this.discard();
    return undefined;
  }

  /** Remove the stored identity (nothing happens when there is none). */
  discard(): void {
    rmSync(this.path, { force: true });
  }
}
