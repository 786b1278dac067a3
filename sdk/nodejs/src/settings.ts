/** How a plugin finds and trusts its core, read once from the environment (`settingsFromEnv`). */
import { isAbsolute } from "node:path";

import { ConfigurationError } from "./errors.js";

export const DEFAULT_BOOTSTRAP_ADDRESS = "127.0.0.1:7444";
export const DEFAULT_TRUST_DOMAIN = "vivified.local";
/** The longest Unix socket path Linux binds (`sun_path` holds 108 bytes with its NUL). */
export const MAX_SOCKET_PATH = 107;

export interface PluginSettings {
  /** The plugin's manifest (YAML or JSON); must be the one the operator approved. */
  readonly manifestPath: string;
  /** The one-time token printed by `vivified plugins approve`. Never log it. "" is allowed with a `dataDir`: the plugin then only resumes. */
  readonly joinToken: string;
  /** The plugin's own state directory (`VIVIFIED_DATA_DIR`); the SDK keeps its key and certificate there to resume after a crash. "" for none. */
  readonly dataDir: string;
  /** PEM root of the core's CA: the only root trusted, both for the core's server and for the core calling us. */
  readonly caFile: string;
  /** The core's bootstrap port (`host:port`, or `unix:/abs/path` for its socket), server-authenticated TLS, used once for Register. */
  readonly bootstrapAddress: string;
  /** The core's mTLS port (`host:port` or `unix:/abs/path`); "" (default) uses `core_endpoint` from the RegisterResponse. */
  readonly coreAddress: string;
  /** SPIFFE trust domain; the core must present the DNS name `core.<trustDomain>` and the URI `spiffe://<trustDomain>/core`. */
  readonly trustDomain: string;
  /** Interface the plugin's server binds to; the port is chosen by the OS. */
  readonly listenHost: string;
  /** Host the core should dial, when it differs from `listenHost`. */
  readonly advertiseHost: string;
  /**
   * Serve on this Unix socket (an absolute path) instead of a TCP port; "" (default) serves on TCP.
   * A sandboxed plugin has no network: its supervisor sets `VIVIFIED_LISTEN_SOCKET`, and the endpoint
   * sent to the core is then `unix:<listenSocket>` (`listenHost` and `advertiseHost` are unused).
   * mTLS runs over it as over TCP.
   */
  readonly listenSocket: string;
  /** Renew once this fraction of the certificate's lifetime has passed (0 < f < 1). */
  readonly renewAtFraction: number;
  /** How long in-flight calls may run on after a stop is requested, in seconds. */
  readonly shutdownGraceSeconds: number;
  /** Deadline of each call the SDK makes to the core (Register, heartbeats, renewal), in seconds. */
  readonly connectTimeoutSeconds: number;
  /** Where `proto/` is; default: the repository this SDK lives in. */
  readonly protoDir: string;
  /** The conformance suite's control file (`VIVIFIED_CONFORMANCE_CONTROL`); "" (default) turns the hook off (see conformance.ts). */
  readonly conformanceControl: string;
}

export type PluginSettingsInput = Pick<PluginSettings, "manifestPath" | "caFile"> &
  Partial<Omit<PluginSettings, "manifestPath" | "caFile">>;

/** Settings with defaults filled in, checked; throws `ConfigurationError`. */
export function pluginSettings(input: PluginSettingsInput): PluginSettings {
  const settings: PluginSettings = Object.freeze({
    bootstrapAddress: DEFAULT_BOOTSTRAP_ADDRESS,
    coreAddress: "",
    trustDomain: DEFAULT_TRUST_DOMAIN,
    listenHost: "127.0.0.1",
    advertiseHost: "",
    listenSocket: "",
    renewAtFraction: 0.66,
    shutdownGraceSeconds: 5,
    connectTimeoutSeconds: 10,
    protoDir: "",
    conformanceControl: "",
    joinToken: "",
    dataDir: "",
    ...input,
  });
  if (!settings.joinToken && !settings.dataDir) throw new ConfigurationError("joinToken is empty (and no dataDir could hold a registration to resume)");
  if (!(settings.renewAtFraction > 0 && settings.renewAtFraction < 1)) {
    throw new ConfigurationError(`renewAtFraction must be between 0 and 1, got ${settings.renewAtFraction}`);
  }
  if (settings.shutdownGraceSeconds < 0 || !(settings.connectTimeoutSeconds > 0)) {
    throw new ConfigurationError("shutdownGraceSeconds must be >= 0 and connectTimeoutSeconds > 0");
  }
  for (const name of ["manifestPath", "caFile", "bootstrapAddress", "trustDomain", "listenHost"] as const) {
    if (!settings[name]) throw new ConfigurationError(`${name} is empty`);
  }
  if (settings.listenSocket) {
    if (!isAbsolute(settings.listenSocket)) throw new ConfigurationError(`listenSocket must be an absolute path, got ${settings.listenSocket}`);
    if (Buffer.byteLength(settings.listenSocket) > MAX_SOCKET_PATH) {
      throw new ConfigurationError(`listenSocket ${settings.listenSocket} is longer than ${MAX_SOCKET_PATH} bytes, which Linux cannot bind`, "SOCKET_PATH_TOO_LONG");
    }
  }
  // The core's `core_endpoint` is its TCP port: a plugin that reaches the bootstrap port over a socket
  // (no network, as in a sandbox) must be told the core's socket too.
  if (settings.bootstrapAddress.startsWith("unix:") && !settings.coreAddress) {
    throw new ConfigurationError("bootstrapAddress is a Unix socket but coreAddress is empty: set VIVIFIED_CORE_ADDRESS to the core's socket");
  }
  return settings;
}

/**
 * Settings from `VIVIFIED_*` variables, the same ones the Python SDK reads.
 * Required: `VIVIFIED_MANIFEST`, `VIVIFIED_CA_FILE`, and `VIVIFIED_JOIN_TOKEN` unless `VIVIFIED_DATA_DIR` is set.
 * Optional: `VIVIFIED_DATA_DIR`, `VIVIFIED_BOOTSTRAP_ADDRESS`, `VIVIFIED_CORE_ADDRESS`, `VIVIFIED_TRUST_DOMAIN`, `VIVIFIED_PROTO_DIR`,
 * `VIVIFIED_LISTEN_SOCKET` (serve on that Unix socket: set by the supervisor of a sandboxed plugin),
 * `VIVIFIED_CONFORMANCE_CONTROL` (the conformance suite's control file).
 *
 *     const settings = settingsFromEnv(process.env);
 */
export function settingsFromEnv(env: Record<string, string | undefined>, overrides: Partial<PluginSettings> = {}): PluginSettings {
  const required = (variable: string, what: string): string => {
    const value = env[variable] ?? "";
    if (!value) throw new ConfigurationError(`environment variable ${variable} is not set (it gives ${what})`, "SETTING_MISSING");
    return value;
  };
  return pluginSettings({
    manifestPath: required("VIVIFIED_MANIFEST", "the path of the plugin's manifest"),
    // Optional with a data dir: a restarted plugin resumes from the identity stored there.
    joinToken: env["VIVIFIED_DATA_DIR"]
      ? env["VIVIFIED_JOIN_TOKEN"] ?? ""
      : required("VIVIFIED_JOIN_TOKEN", "the one-time join token from `vivified plugins approve`"),
    dataDir: env["VIVIFIED_DATA_DIR"] || "",
    caFile: required("VIVIFIED_CA_FILE", "the path of the core's root CA certificate"),
    bootstrapAddress: env["VIVIFIED_BOOTSTRAP_ADDRESS"] || DEFAULT_BOOTSTRAP_ADDRESS,
    coreAddress: env["VIVIFIED_CORE_ADDRESS"] || "",
    trustDomain: env["VIVIFIED_TRUST_DOMAIN"] || DEFAULT_TRUST_DOMAIN,
    protoDir: env["VIVIFIED_PROTO_DIR"] || "",
    listenSocket: env["VIVIFIED_LISTEN_SOCKET"] || "",
    conformanceControl: env["VIVIFIED_CONFORMANCE_CONTROL"] || "",
    ...overrides,
  });
}
