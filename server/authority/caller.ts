import type { ClientIdentity } from "../ports/client-identity.ts";
import type { CertificateRecord, TokenRecord } from "../ports/storage.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";

/**
 * Who a request was from, as far as the authority could tell, filled in as early as
 * possible so that a refusal is audited against the device it concerns — including
 * refusals decided before any verb ran (wrong media type, oversized body).
 */
export interface Caller {
  actor: string;
  deviceId?: string;
  /** The serial of the client certificate the request authenticated with, if any. */
  serial?: string;
  /** The device id a client claimed (HTTP Basic user name) when it differs. */
  claimed?: string;
}

/** What the client presented: HTTP Basic (device id + token) or a Bearer token. */
export type TokenCredentials =
  | { type: "basic"; username: string; password: string }
  | { type: "bearer"; token: string };

export const TOKEN_PREFIX = "edt_";

/** The token a secret names, if any; no validity checks. */
export async function findToken(
  deps: Pick<AuthorityDeps, "storage" | "digest">,
  secret: string,
): Promise<TokenRecord | undefined> {
  if (!secret.startsWith(TOKEN_PREFIX) || secret.length > 128) return undefined;
  return deps.storage.getTokenByHash(await sha256Hex(deps.digest, secret));
}

/** The certificate of ours a TLS client presented, if any; no validity checks. */
export async function findOwnCertificate(
  deps: Pick<AuthorityDeps, "storage" | "digest">,
  client: ClientIdentity | undefined,
): Promise<CertificateRecord | undefined> {
  const leaf = client?.chain[0];
  const fingerprint = leaf ? await sha256Hex(deps.digest, leaf) : client?.fingerprint;
  return fingerprint ? deps.storage.getCertificateByFingerprint(fingerprint) : undefined;
}

export function noteToken(caller: Caller, token: TokenRecord, creds: TokenCredentials): void {
  caller.actor = `token:${token.id}`;
  caller.deviceId = token.deviceId;
  if (creds.type === "basic" && creds.username !== token.deviceId) caller.claimed = creds.username.slice(0, 64);
}

export function noteCertificate(caller: Caller, certificate: CertificateRecord): void {
  caller.actor = `device:${certificate.deviceId}`;
  caller.deviceId = certificate.deviceId;
  caller.serial = certificate.serial;
}

/** Best-effort identification for a request refused before a verb ran. */
export async function identify(
  deps: Pick<AuthorityDeps, "storage" | "digest">,
  creds: TokenCredentials | undefined,
  client: ClientIdentity | undefined,
): Promise<Caller> {
  const caller: Caller = { actor: "anonymous" };
  if (creds) {
    if (creds.type === "basic") caller.deviceId = creds.username.slice(0, 64);
    const token = await findToken(deps, creds.type === "basic" ? creds.password : creds.token);
    if (token) noteToken(caller, token, creds);
    return caller;
  }
  const own = await findOwnCertificate(deps, client);
  if (own) noteCertificate(caller, own);
  return caller;
}
