/**
 * The plugin's key pair, its CSR, and the certificate the core issues for it.
 *
 * A fresh EC P-256 key for every registration and every renewal; the private
 * key never leaves the process. The CSR carries only the subject CN (the
 * plugin id) and proof of possession: names, usages and lifetime come from
 * the core's policy, so the SDK checks what came back instead of asking.
 */
import "reflect-metadata";
import { createPrivateKey, createPublicKey, webcrypto } from "node:crypto";

import * as x509 from "@peculiar/x509";

import { SDK_DOMAIN, VivifiedError } from "./errors.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface KeyAndCsr {
  readonly keyPem: string;
  readonly csrPem: string;
  /** DER SubjectPublicKeyInfo of the key, to compare with the issued certificate's. */
  readonly spki: Buffer;
}

function pem(label: string, der: ArrayBuffer): string {
  const body = Buffer.from(der).toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** An EC P-256 key and a CSR with subject CN = plugin id and no SANs. */
export async function newKeyAndCsr(pluginId: string): Promise<KeyAndCsr> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [pluginId] }],
    keys,
    signingAlgorithm: EC_P256,
  });
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  const spki = await webcrypto.subtle.exportKey("spki", keys.publicKey);
  return { keyPem: pem("PRIVATE KEY", pkcs8), csrPem: csr.toString("pem") + "\n", spki: Buffer.from(spki) };
}

/** The URI SANs of a certificate (DER or PEM); [] when it has none or cannot be parsed. */
export function uriSans(certificate: Buffer | string): string[] {
  try {
    const cert = new x509.X509Certificate(typeof certificate === "string" ? certificate : new Uint8Array(certificate));
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    if (san === null) return [];
    return san.names.items.filter((n) => n.type === "url").map((n) => n.value);
  } catch {
    return [];
  }
}

/** A certificate chain the core issued, with the key it certifies. */
export class IssuedCertificate {
  readonly chainPem: string;
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When the SDK received it (its own clock). */
  readonly receivedAt: Date;

  constructor(chainPem: string, keyPem: string, leaf: x509.X509Certificate, receivedAt: Date) {
    this.chainPem = chainPem;
    this.keyPem = keyPem;
    this.notBefore = leaf.notBefore;
    this.notAfter = leaf.notAfter;
    this.receivedAt = receivedAt;
  }

  /**
   * When `fraction` of the usable lifetime has passed, counted from when the
   * certificate was received (the core backdates notBefore for clock skew, so
   * a short-lived certificate measured from there could be due at once).
   */
  renewTime(fraction: number): Date {
    const start = Math.max(this.notBefore.getTime(), this.receivedAt.getTime());
    return new Date(start + (this.notAfter.getTime() - start) * fraction);
  }
}

function invalid(why: string): VivifiedError {
  return new VivifiedError(`the core issued an unusable certificate: ${why}`, {
    reason: "ISSUED_CERTIFICATE_INVALID",
    domain: SDK_DOMAIN,
  });
}

/** Check that the issued leaf certifies our key and names exactly `spiffeId`; refuse it otherwise. */
export function acceptIssued(chainPem: string, requested: KeyAndCsr, spiffeId: string, receivedAt: Date): IssuedCertificate {
  return checked(chainPem, requested.keyPem, requested.spki, spiffeId, receivedAt);
}

/** A stored key and certificate, held to the same checks as a fresh one (`acceptIssued`). */
export function loadIssued(chainPem: string, keyPem: string, spiffeId: string, receivedAt: Date): IssuedCertificate {
  let spki: Buffer;
  try {
    spki = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
  } catch {
    throw invalid("the stored private key cannot be read");
  }
  return checked(chainPem, keyPem, spki, spiffeId, receivedAt);
}

function checked(chainPem: string, keyPem: string, spki: Buffer, spiffeId: string, receivedAt: Date): IssuedCertificate {
  let leaf: x509.X509Certificate;
  try {
    leaf = new x509.X509Certificate(chainPem.slice(0, chainPem.indexOf("-----END CERTIFICATE-----") + 25));
  } catch {
    throw invalid("not a PEM certificate chain");
  }
  if (!Buffer.from(leaf.publicKey.rawData).equals(spki)) throw invalid("it certifies another public key");
  const uris = uriSans(Buffer.from(leaf.rawData));
  if (uris.length !== 1 || uris[0] !== spiffeId) {
    throw invalid(`expected the single URI SAN ${spiffeId}, found ${JSON.stringify(uris)}`);
  }
  return new IssuedCertificate(chainPem, keyPem, leaf, receivedAt);
}
