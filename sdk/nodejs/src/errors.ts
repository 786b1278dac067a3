/**
 * Typed errors of the Node SDK, the same tree as the Python SDK's:
 *
 *     VivifiedError                 root; `code`, `reason`, `domain`, `message`, `metadata`, `ruleId`
 *     ├── ConfigurationError        the plugin's settings or manifest cannot be used (local, never sent)
 *     ├── CoreUntrustedError        the configured core could not be reached as a verified core
 *     ├── InvalidArgumentError      INVALID_ARGUMENT   e.g. MANIFEST_INVALID, CSR_INVALID
 *     ├── UnauthenticatedError      UNAUTHENTICATED    e.g. JOIN_TOKEN_INVALID, CERTIFICATE_REVOKED
 *     ├── PermissionDeniedError     PERMISSION_DENIED  e.g. PLUGIN_DISABLED, POLICY_DENIED
 *     ├── NotFoundError             NOT_FOUND
 *     ├── FailedPreconditionError   FAILED_PRECONDITION
 *     ├── ResourceExhaustedError    RESOURCE_EXHAUSTED e.g. RATE_LIMITED
 *     └── UnavailableError          UNAVAILABLE        e.g. TARGET_UNAVAILABLE
 *
 * The core ends every refused call with a `google.rpc.Status` carrying one
 * `google.rpc.ErrorInfo` in the `grpc-status-details-bin` trailer; its
 * `reason` (UPPER_SNAKE) and `domain` (`vivified.<area>`) are what code should
 * branch on, and `metadata.rule_id` names the policy rule that decided.
 * Transport failures carry no ErrorInfo: `reason` and `domain` are "".
 */
import * as grpc from "@grpc/grpc-js";

import type { Protos } from "./protos.js";

export const SDK_DOMAIN = "vivified.sdk";
const DETAILS_KEY = "grpc-status-details-bin";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";

export interface ErrorFields {
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  code?: grpc.status;
}

export class VivifiedError extends Error {
  readonly code: grpc.status;
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;

  constructor(message: string, fields: ErrorFields = {}) {
    super(message);
    this.name = new.target.name;
    this.code = fields.code ?? (new.target as unknown as { defaultCode: grpc.status }).defaultCode ?? grpc.status.UNKNOWN;
    this.reason = fields.reason ?? "";
    this.domain = fields.domain ?? "";
    this.metadata = Object.freeze({ ...(fields.metadata ?? {}) });
  }

  static defaultCode: grpc.status = grpc.status.UNKNOWN;

  /** The id of the policy rule that decided, when the core named one. */
  get ruleId(): string {
    return this.metadata["rule_id"] ?? "";
  }

  override toString(): string {
    const reason = this.reason ? ` [${this.domain}/${this.reason}]` : "";
    return `${grpc.status[this.code]}${reason}: ${this.message}`;
  }
}

export class ConfigurationError extends VivifiedError {
  static override defaultCode = grpc.status.FAILED_PRECONDITION;
  constructor(message: string, reason = "CONFIGURATION_INVALID") {
    super(message, { reason, domain: SDK_DOMAIN });
  }
}

/** TLS verification of the core failed, or nothing answered. Never retried: an impostor must not get the token. */
export class CoreUntrustedError extends VivifiedError {
  static override defaultCode = grpc.status.UNAVAILABLE;
  constructor(message: string) {
    super(message, { reason: "CORE_UNTRUSTED", domain: SDK_DOMAIN });
  }
}

export class InvalidArgumentError extends VivifiedError {
  static override defaultCode = grpc.status.INVALID_ARGUMENT;
}
export class UnauthenticatedError extends VivifiedError {
  static override defaultCode = grpc.status.UNAUTHENTICATED;
}
export class PermissionDeniedError extends VivifiedError {
  static override defaultCode = grpc.status.PERMISSION_DENIED;
}
export class NotFoundError extends VivifiedError {
  static override defaultCode = grpc.status.NOT_FOUND;
}
export class FailedPreconditionError extends VivifiedError {
  static override defaultCode = grpc.status.FAILED_PRECONDITION;
}
export class ResourceExhaustedError extends VivifiedError {
  static override defaultCode = grpc.status.RESOURCE_EXHAUSTED;
}
export class UnavailableError extends VivifiedError {
  static override defaultCode = grpc.status.UNAVAILABLE;
}

const BY_CODE = new Map<grpc.status, new (message: string, fields?: ErrorFields) => VivifiedError>([
  [grpc.status.INVALID_ARGUMENT, InvalidArgumentError],
  [grpc.status.UNAUTHENTICATED, UnauthenticatedError],
  [grpc.status.PERMISSION_DENIED, PermissionDeniedError],
  [grpc.status.NOT_FOUND, NotFoundError],
  [grpc.status.FAILED_PRECONDITION, FailedPreconditionError],
  [grpc.status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  [grpc.status.UNAVAILABLE, UnavailableError],
]);

/** The typed error for a status code, reason and message (e.g. one refused event of a streamed publish). */
export function fromStatus(code: grpc.status, message: string, fields: Omit<ErrorFields, "code"> = {}): VivifiedError {
  const cls = BY_CODE.get(code) ?? VivifiedError;
  return new cls(message || grpc.status[code] || "UNKNOWN", { ...fields, code });
}

/** Turn a failed call into the typed error for its status, with the core's ErrorInfo when it sent one. */
export function fromServiceError(err: Partial<grpc.ServiceError>, protos: Protos): VivifiedError {
  const code = err.code ?? grpc.status.UNKNOWN;
  let message = err.details ?? "";
  let fields: Omit<ErrorFields, "code"> = {};
  const raw = err.metadata?.get(DETAILS_KEY)[0];
  if (raw instanceof Buffer) {
    try {
      const status = protos.decode("google.rpc.Status", raw);
      // A status whose code disagrees with the call's is not trusted (as grpc-status does in Python).
      if (status["code"] === code) {
        message = status["message"] || message;
        for (const detail of status["details"] as { type_url: string; value: Buffer }[]) {
          if (detail.type_url !== ERROR_INFO) continue;
          const info = protos.decode("google.rpc.ErrorInfo", detail.value);
          fields = { reason: info["reason"], domain: info["domain"], metadata: { ...info["metadata"] } };
          break;
        }
      }
    } catch {
      fields = {};
    }
  }
  return fromStatus(code, message, fields);
}

/** Trailing metadata carrying a `google.rpc.Status` with one ErrorInfo: what a plugin handler sends when it refuses. */
export function statusMetadata(
  protos: Protos,
  code: grpc.status,
  message: string,
  fields: { reason: string; domain: string; metadata?: Record<string, string> },
): grpc.Metadata {
  const info = protos.pack("google.rpc.ErrorInfo", {
    reason: fields.reason,
    domain: fields.domain,
    metadata: fields.metadata ?? {},
  });
  const metadata = new grpc.Metadata();
  metadata.set(DETAILS_KEY, protos.encode("google.rpc.Status", { code, message, details: [info] }));
  return metadata;
}

/** The gRPC status a handler's thrown error becomes: a VivifiedError keeps its code and ErrorInfo, anything else is a bare INTERNAL. */
export function toStatusObject(protos: Protos, error: unknown): Partial<grpc.StatusObject> {
  if (error instanceof VivifiedError && error.code !== grpc.status.OK) {
    return {
      code: error.code,
      details: error.message,
      metadata: statusMetadata(protos, error.code, error.message, {
        reason: error.reason || "UNSPECIFIED",
        domain: error.domain || SDK_DOMAIN,
        metadata: { ...error.metadata },
      }),
    };
  }
  // The error may hold anything; the caller learns only that the plugin failed.
  return { code: grpc.status.INTERNAL, details: "the plugin failed to handle the call" };
}
