import { encodeCsrAttrs } from "../pki/csrattrs.ts";
import type { PeerInfo } from "../ports/client-identity.ts";
import { asAuthorityError, recordDenial } from "./audit.ts";
import { type AuthorityDeps, caFor } from "./deps.ts";
import { enroll } from "./enroll.ts";
import { type EnrollRequest, type Issued } from "./enrollment-request.ts";
import type { AuthorityError } from "./errors.ts";
import { resolveProfile } from "./profiles.ts";
import { type ReenrollRequest, reenroll } from "./reenroll.ts";
import { type CreatedToken, type CreateTokensRequest, createTokens } from "./tokens.ts";
import type { TokenCredentials } from "./trail.ts";
import { identify, type RequestTrail } from "./trail.ts";

export interface RejectedRequest {
  action: string;
  peer: PeerInfo;
  /** Credentials, if they could be read before the refusal. */
  credentials?: TokenCredentials;
  error: AuthorityError;
}

/**
 * The verbs the frontends call. Every refusal is audited here, with whatever the
 * authority had learned about the caller when it refused.
 */
export class Authority {
  constructor(readonly deps: AuthorityDeps) {}

  /** RFC 7030 §4.1: the label's issuing CA and the chain up to its root. */
  cacerts(label?: string): Uint8Array[] {
    return caFor(this.deps, resolveProfile(this.deps, label ?? "device")).chain;
  }

  /** RFC 7030 §4.5: what the profile wants in a CSR. */
  csrattrs(label?: string): Uint8Array {
    const profile = resolveProfile(this.deps, label ?? "device");
    return encodeCsrAttrs(profile.keyTypes, profile.rsaMinBits);
  }

  async enroll(req: EnrollRequest): Promise<Issued> {
    const trail: RequestTrail = { actor: "anonymous" };
    return this.audited("est.simpleenroll", req.peer.remoteAddress, trail, () => enroll(this.deps, req, trail));
  }

  /** RFC 7030 §4.4: like simpleenroll, but the server makes the key pair. */
  async serverkeygen(req: EnrollRequest): Promise<Issued> {
    const trail: RequestTrail = { actor: "anonymous" };
    return this.audited("est.serverkeygen", req.peer.remoteAddress, trail, () =>
      enroll(this.deps, { ...req, serverKeygen: true }, trail),
    );
  }

  async reenroll(req: ReenrollRequest): Promise<Issued> {
    const trail: RequestTrail = { actor: "anonymous" };
    return this.audited("est.simplereenroll", req.peer.remoteAddress, trail, () => reenroll(this.deps, req, trail));
  }

  createTokens(req: CreateTokensRequest): Promise<CreatedToken[]> {
    return createTokens(this.deps, req);
  }

  /** For refusals decided before any verb ran (size, media type, encoding). */
  async rejectRequest(r: RejectedRequest): Promise<void> {
    const trail = await identify(this.deps, r.credentials, r.peer.client);
    await recordDenial(this.deps, { action: r.action, remote: r.peer.remoteAddress, ...trail }, r.error);
  }

  private async audited<T>(action: string, remote: string, trail: RequestTrail, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const e = asAuthorityError(err);
      // A request waiting for approval is not a refusal; it was recorded when it arrived.
      if (e.code !== "pending") await recordDenial(this.deps, { action, remote, ...trail }, e);
      throw e;
    }
  }
}
