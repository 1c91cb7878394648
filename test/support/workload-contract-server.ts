/**
 * A small HTTPS server implementing the server side of the workload contract
 * (`/workload/v1/*`), for the agent's tests before the product server is wired in: real
 * mutual TLS (the device certificate is required), real CSR verification, X.509-SVIDs
 * signed by a real P-256 issuing CA (one URI SAN, not a CA, digitalSignature), JWT-SVIDs
 * signed ES256 with jose, JWKS bundles. Time is the test's clock.
 */
import { webcrypto } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import * as x509 from "@peculiar/x509";
import { exportJWK, SignJWT } from "jose";

const crypto = webcrypto as Crypto;
x509.cryptoProvider.set(crypto);
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

export interface ContractEntry {
  id: string;
  spiffeId: string;
  selectors: string[];
  ttlSeconds: number;
  jwtAudiences: string[];
}

export interface ContractServer {
  url: string;
  trustDomain: string;
  /** Trust anchor of the trust domain (PEM) and the issuing CA (PEM). */
  rootPem: string;
  issuingPem: string;
  entries: ContractEntry[];
  /** Bump after changing `entries`. */
  bumpRevision(): void;
  /** Requests seen, by method and path (and the device CN). */
  requests: { method: string; path: string; cn?: string; body?: unknown }[];
  /** Federated trust domains' JWKS served in /bundles. */
  federated: Record<string, unknown>;
  /** Reject every request with this (status, body) when set (e.g. revoked). */
  refuse?: { status: number; body: string };
  close(): Promise<void>;
}

const b64 = (d: ArrayBuffer | Uint8Array) =>
  Buffer.from(d instanceof Uint8Array ? d : new Uint8Array(d)).toString("base64");

async function ca(name: string, now: number, issuer?: { cert: x509.X509Certificate; keys: CryptoKeyPair }) {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const ext = [
    new x509.BasicConstraintsExtension(true, issuer ? 0 : 1, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  const cert = issuer
    ? await x509.X509CertificateGenerator.create({
        serialNumber: "0a",
        subject: name,
        issuer: issuer.cert.subject,
        notBefore: new Date(now - 86_400_000),
        notAfter: new Date(now + 365 * 86_400_000),
        publicKey: keys.publicKey,
        signingKey: issuer.keys.privateKey,
        signingAlgorithm: ALG,
        extensions: ext,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: "01",
        name,
        notBefore: new Date(now - 86_400_000),
        notAfter: new Date(now + 365 * 86_400_000),
        keys,
        signingAlgorithm: ALG,
        extensions: ext,
      });
  return { cert, keys };
}

export async function startContractServer(opts: {
  /** The HTTPS server's certificate and key (PEM), for 127.0.0.1. */
  tls: { cert: string; key: string };
  now: () => number;
  trustDomain?: string;
  pollSeconds?: number;
}): Promise<ContractServer> {
  const td = opts.trustDomain ?? "example.org";
  const root = await ca(`CN=${td} SPIFFE root`, opts.now());
  const issuing = await ca(`CN=${td} SPIFFE issuing`, opts.now(), root);
  const jwtKeys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const jwtJwk = { ...(await exportJWK(jwtKeys.publicKey)), use: "jwt-svid", kid: "jwt-1", alg: "ES256" };
  const rootJwk = { ...(await exportJWK(root.keys.publicKey)), use: "x509-svid", x5c: [b64(root.cert.rawData)] };
  let revision = 1;
  let serial = 0x100;

  const state: ContractServer = {
    url: "",
    trustDomain: td,
    rootPem: root.cert.toString("pem"),
    issuingPem: issuing.cert.toString("pem"),
    entries: [],
    bumpRevision: () => {
      revision++;
    },
    requests: [],
    federated: {},
    close: () => new Promise<void>((r) => server.close(() => r())),
  };

  const handle = async (method: string, path: string, body: unknown): Promise<[number, unknown]> => {
    if (method === "GET" && path === "/workload/v1/entries")
      return [
        200,
        { trustDomain: td, revision: `r${revision}`, pollSeconds: opts.pollSeconds ?? 30, entries: state.entries },
      ];
    if (method === "GET" && path === "/workload/v1/bundles")
      return [
        200,
        { trustDomain: td, bundle: { keys: [rootJwk, jwtJwk], spiffe_sequence: 1 }, federated: state.federated },
      ];
    if (method === "POST" && path === "/workload/v1/x509-svids") {
      const reqs = (body as { requests?: { entryId: string; csr: string }[] }).requests ?? [];
      if (reqs.length < 1 || reqs.length > 100) return [400, "1..100 requests"];
      const svids = [];
      for (const r of reqs) {
        const entry = state.entries.find((e) => e.id === r.entryId);
        if (!entry) return [403, `entry ${r.entryId} is not this device's`];
        const csr = new x509.Pkcs10CertificateRequest(Buffer.from(r.csr, "base64"));
        if (!(await csr.verify())) return [400, "CSR signature invalid"];
        const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
        if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") return [400, "CSR key is not P-256"];
        const now = opts.now();
        const notAfter = new Date(now + entry.ttlSeconds * 1000);
        const cert = await x509.X509CertificateGenerator.create({
          serialNumber: (serial++).toString(16).padStart(4, "0"),
          subject: "",
          issuer: issuing.cert.subject,
          notBefore: new Date(now - 60_000),
          notAfter,
          publicKey: await csr.publicKey.export(),
          signingKey: issuing.keys.privateKey,
          signingAlgorithm: ALG,
          extensions: [
            new x509.BasicConstraintsExtension(false, undefined, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
            new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
            new x509.SubjectAlternativeNameExtension([{ type: "url", value: entry.spiffeId }], true),
            await x509.AuthorityKeyIdentifierExtension.create(issuing.keys.publicKey),
          ],
        });
        svids.push({
          entryId: entry.id,
          spiffeId: entry.spiffeId,
          certificate: b64(cert.rawData),
          chain: [b64(issuing.cert.rawData)],
          serial: cert.serialNumber,
          notAfter: notAfter.toISOString(),
        });
      }
      return [200, { svids, bundle: [b64(root.cert.rawData)] }];
    }
    if (method === "POST" && path === "/workload/v1/jwt-svids") {
      const { entryId, audience } = body as { entryId: string; audience: string[] };
      const entry = state.entries.find((e) => e.id === entryId);
      if (!entry) return [403, "not this device's entry"];
      if (!Array.isArray(audience) || audience.length === 0 || !audience.every((a) => entry.jwtAudiences.includes(a)))
        return [403, "audience not allowed for this entry"];
      const now = Math.floor(opts.now() / 1000);
      const exp = now + Math.min(entry.ttlSeconds, 3600);
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: "jwt-1", typ: "JWT" })
        .setSubject(entry.spiffeId)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .sign(jwtKeys.privateKey);
      return [200, { spiffeId: entry.spiffeId, token, expiresAt: new Date(exp * 1000).toISOString() }];
    }
    return [404, "not found"];
  };

  const server: Server = createServer(
    { key: opts.tls.key, cert: opts.tls.cert, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        const cn = peer?.subject?.CN ? String(peer.subject.CN) : undefined;
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        state.requests.push({ method: req.method ?? "", path: req.url ?? "", ...(cn ? { cn } : {}), body });
        let status: number;
        let out: unknown;
        if (!cn) [status, out] = [401, "client certificate required"];
        else if (state.refuse) [status, out] = [state.refuse.status, state.refuse.body];
        else [status, out] = await handle(req.method ?? "", req.url ?? "", body);
        res.writeHead(status, { "content-type": typeof out === "string" ? "text/plain" : "application/json" });
        res.end(typeof out === "string" ? `${out}\n` : JSON.stringify(out));
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  state.url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  return state;
}
