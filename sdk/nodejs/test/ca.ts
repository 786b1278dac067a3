/** A throwaway CA for unit tests: a root and leaves with the platform's SANs. */
import "reflect-metadata";
import { webcrypto } from "node:crypto";

import * as x509 from "@peculiar/x509";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function pem(label: string, der: ArrayBuffer): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(der).toString("base64").replace(/.{1,64}/g, "$&\n")}-----END ${label}-----\n`;
}

export interface Leaf {
  certPem: string;
  keyPem: string;
}

export class TestCA {
  private constructor(readonly rootPem: string, private readonly root: x509.X509Certificate, private readonly keys: CryptoKeyPair) {}

  static async create(): Promise<TestCA> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      name: "CN=test root",
      keys,
      signingAlgorithm: ALG,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    });
    return new TestCA(root.toString("pem") + "\n", root, keys);
  }

  /** A leaf with the given SANs, for both TLS roles; `publicKey` certifies somebody else's key when given. */
  async leaf(names: { uri?: string[]; dns?: string[]; ip?: string[] }, publicKey?: CryptoKey): Promise<Leaf> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const san = [
      ...(names.uri ?? []).map((value) => ({ type: "url" as const, value })),
      ...(names.dns ?? []).map((value) => ({ type: "dns" as const, value })),
      ...(names.ip ?? []).map((value) => ({ type: "ip" as const, value })),
    ];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString("hex").replace(/^./, "1"),
      subject: "CN=leaf",
      issuer: this.root.subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      signingKey: this.keys.privateKey,
      publicKey: publicKey ?? keys.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension(san),
      ],
    });
    return { certPem: cert.toString("pem") + "\n", keyPem: pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)) };
  }
}

export async function importSpki(spki: Buffer): Promise<CryptoKey> {
  return webcrypto.subtle.importKey("spki", spki, ALG, true, ["verify"]);
}
