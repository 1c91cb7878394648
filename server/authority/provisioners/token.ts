import { base64url } from "../../pki/base64.ts";
import type { TokenRecord } from "../../ports/storage.ts";
import type { AuthorityDeps } from "../deps.ts";
import { sha256Hex } from "../digest.ts";
import { forbidden, unauthenticated } from "../errors.ts";

/** What the client presented: HTTP Basic (device id + token) or a Bearer token. */
export type TokenCredentials =
  | { type: "basic"; username: string; password: string }
  | { type: "bearer"; token: string };

const TOKEN_PREFIX = "edt_";

/** A fresh bootstrap secret: 256 random bits, prefixed so secret scanners can spot it. */
export function newTokenSecret(crypto: Crypto): string {
  return TOKEN_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)));
}

export function newTokenId(crypto: Crypto): string {
  return `tok_${base64url(crypto.getRandomValues(new Uint8Array(9)))}`;
}

/**
 * Finds the token by the SHA-256 of the presented secret (stored hashes only; a
 * lookup by a 256-bit-entropy hash leaks nothing useful through timing) and checks
 * it is usable by this device now. Never consumes it: redemption is part of the
 * issuance write set.
 */
export async function authenticateToken(deps: AuthorityDeps, creds: TokenCredentials): Promise<TokenRecord> {
  const secret = creds.type === "basic" ? creds.password : creds.token;
  if (!secret.startsWith(TOKEN_PREFIX) || secret.length > 128) {
    throw unauthenticated("token_unknown", "bootstrap token is not valid");
  }
  const token = await deps.storage.getTokenByHash(await sha256Hex(deps.crypto, secret));
  if (!token) throw unauthenticated("token_unknown", "bootstrap token is not valid");
  const now = deps.clock.now();
  if (token.usedAt)
    throw unauthenticated("token_used", "bootstrap token has already been used; ask an operator for a new one");
  if (token.revokedAt) throw unauthenticated("token_revoked", "bootstrap token has been revoked");
  if (token.expiresAt.getTime() <= now.getTime()) {
    throw unauthenticated("token_expired", `bootstrap token expired at ${token.expiresAt.toISOString()}`);
  }
  if (creds.type === "basic" && creds.username !== token.deviceId) {
    throw forbidden("token_wrong_device", "bootstrap token is not valid for this device id");
  }
  return token;
}
