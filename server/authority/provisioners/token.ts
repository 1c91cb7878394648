import { base64url } from "../../pki/base64.ts";
import type { TokenRecord } from "../../ports/storage.ts";
import type { TokenCredentials } from "../caller.ts";
import { type Caller, findToken, noteToken, TOKEN_PREFIX } from "../caller.ts";
import type { AuthorityDeps } from "../deps.ts";
import { forbidden, unauthenticated } from "../errors.ts";

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
export async function authenticateToken(
  deps: AuthorityDeps,
  creds: TokenCredentials,
  caller: Caller,
): Promise<TokenRecord> {
  // Until the token is found, the claimed device is the best name for the audit record.
  if (creds.type === "basic") caller.deviceId = creds.username.slice(0, 64);
  const token = await findToken(deps, creds.type === "basic" ? creds.password : creds.token);
  if (!token) throw unauthenticated("token_unknown", "bootstrap token is not valid");
  noteToken(caller, token, creds);
  checkTokenUsable(deps, token);
  if (creds.type === "basic" && creds.username !== token.deviceId) {
    throw forbidden("token_wrong_device", "bootstrap token is not valid for this device id");
  }
  return token;
}

/** A token that is unused, unrevoked and unexpired now; refuses it otherwise. */
export function checkTokenUsable(deps: Pick<AuthorityDeps, "clock">, token: TokenRecord): void {
  const now = deps.clock.now();
  if (token.usedAt)
    throw unauthenticated("token_used", "bootstrap token has already been used; ask an operator for a new one");
  if (token.revokedAt) throw unauthenticated("token_revoked", "bootstrap token has been revoked");
  if (token.expiresAt.getTime() <= now.getTime()) {
    throw unauthenticated("token_expired", `bootstrap token expired at ${token.expiresAt.toISOString()}`);
  }
}
