/**
 * TLS in both directions, pinned to the core's CA and the core's names.
 *
 * Client side: every channel to the core trusts only the root in `caFile` and
 * verifies the DNS name `core.<trust-domain>` (`grpc.ssl_target_name_override`)
 * whatever address it dials, so a plugin certificate from the same CA (DNS
 * SAN `<id>.plugin.<trust-domain>`) never passes as the core.
 *
 * Server side: the plugin's server requires a client certificate from the
 * same root; its own certificate comes from a `MemoryCertificateProvider`,
 * so a renewed certificate is presented to new connections without a restart
 * and the port can be bound (refusing connections) before Register returns.
 */
import * as grpc from "@grpc/grpc-js";

import type { IssuedCertificate } from "./identity.js";

export function coreName(trustDomain: string): string {
  return `core.${trustDomain}`;
}

export function coreSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/core`;
}

export function channelOptions(trustDomain: string): grpc.ChannelOptions {
  return {
    "grpc.ssl_target_name_override": coreName(trustDomain),
    "grpc.default_authority": coreName(trustDomain),
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
  };
}

/** Server-authenticated TLS to the bootstrap port (no client certificate). */
export function bootstrapCredentials(rootPem: Buffer): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(rootPem);
}

/** Mutual TLS to the core's mTLS port, presenting the plugin's certificate. */
export function mtlsCredentials(rootPem: Buffer, issued: IssuedCertificate): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(rootPem, Buffer.from(issued.keyPem), Buffer.from(issued.chainPem));
}

type CaListener = (update: { caCertificate: Buffer } | null) => void;
type IdentityListener = (update: { certificate: Buffer; privateKey: Buffer } | null) => void;

/** The CA and identity the plugin's server uses, swappable at run time. */
export class MemoryCertificateProvider implements grpc.experimental.CertificateProvider {
  private ca: { caCertificate: Buffer };
  private identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();

  constructor(rootPem: Buffer) {
    this.ca = { caCertificate: rootPem };
  }

  /** Present `issued` to every connection accepted from now on; verify the
   * core's client certificate against `rootPem` if given (a renewal's bundle). */
  install(issued: IssuedCertificate, rootPem?: Buffer): void {
    if (rootPem !== undefined && !rootPem.equals(this.ca.caCertificate)) {
      this.ca = { caCertificate: rootPem };
      for (const listener of this.caListeners) listener(this.ca);
    }
    this.identity = { certificate: Buffer.from(issued.chainPem), privateKey: Buffer.from(issued.keyPem) };
    for (const listener of this.identityListeners) listener(this.identity);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    listener(this.ca);
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    if (this.identity !== null) listener(this.identity);
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  /** Server credentials requiring a client certificate signed by the core's root. */
  credentials(): grpc.ServerCredentials {
    // One provider for both roles (grpc-js takes them in either order).
    return grpc.experimental.createCertificateProviderServerCredentials(this, this, true);
  }
}
