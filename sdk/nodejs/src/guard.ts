/**
 * Only the core may call a plugin.
 *
 * The TLS handshake already requires a client certificate from the core's CA
 * (so a caller without one never reaches a handler), but every plugin and
 * operator holds such a certificate too. This interceptor therefore also
 * requires the verified peer certificate's single URI SAN to be
 * `spiffe://<trust-domain>/core`; any other caller gets PERMISSION_DENIED with
 * reason CALLER_NOT_CORE before a handler runs. Identity comes from the TLS
 * connection only, never from metadata.
 */
import * as grpc from "@grpc/grpc-js";

import { SDK_DOMAIN, statusMetadata } from "./errors.js";
import { uriSans } from "./identity.js";
import type { Protos } from "./protos.js";
import { coreSpiffeId } from "./transport.js";

export const CALLER_NOT_CORE = "CALLER_NOT_CORE";
const MAX_CACHED = 256;

/** DER → URI SANs, bounded: parsing a certificate per call would dominate small calls. */
class UriCache {
  private readonly entries = new Map<string, string[]>();

  uris(der: Buffer): string[] {
    const key = der.toString("base64");
    const cached = this.entries.get(key);
    if (cached !== undefined) return cached;
    const uris = uriSans(der);
    this.entries.set(key, uris);
    if (this.entries.size > MAX_CACHED) this.entries.delete(this.entries.keys().next().value!);
    return uris;
  }
}

export function coreOnlyInterceptor(trustDomain: string, protos: Protos): grpc.ServerInterceptor {
  const core = coreSpiffeId(trustDomain);
  const cache = new UriCache();
  const isCore = (call: grpc.ServerInterceptingCallInterface): boolean => {
    const cert = call.getAuthContext()?.sslPeerCertificate;
    if (cert === undefined || !cert.raw || cert.raw.length === 0) return false;
    const uris = cache.uris(cert.raw);
    return uris.length === 1 && uris[0] === core;
  };
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            if (isCore(call)) {
              mdNext(metadata);
              return;
            }
            const message = "only the core may call this plugin";
            call.sendStatus({
              code: grpc.status.PERMISSION_DENIED,
              details: message,
              metadata: statusMetadata(protos, grpc.status.PERMISSION_DENIED, message, {
                reason: CALLER_NOT_CORE,
                domain: SDK_DOMAIN,
              }),
            });
          },
        });
      },
    });
}
