import type { PeerInfo } from "../../ports/client-identity.ts";
import type { JwtKeyRecord, JwtKeyVault } from "../../ports/trust-bundles.ts";
import { asAuthorityError } from "../audit.ts";
import type { Caller } from "../caller.ts";
import type { AuthorityDeps } from "../deps.ts";
import { AuthorityError } from "../errors.ts";
import { federatedBundles, storeForeignBundle } from "../federation.ts";
import type { Refusals } from "../refusals.ts";
import {
  type JwtSvidRequest,
  type RotationResult,
  rotateJwtKeys,
  type SignedJwtSvid,
  type SpiffeBundle,
  signJwtSvid,
  trustBundle,
} from "../trust-bundles.ts";
import { authenticateWorkloadDevice } from "../workload-svids.ts";

/** What a device is given by `GET /workload/v1/bundles`. */
export interface WorkloadBundles {
  trustDomain: string;
  bundle: SpiffeBundle;
  /** Federated trust domains' bundles, by trust domain. */
  federated: Record<string, SpiffeBundle>;
}

/**
 * The trust domain's SPIFFE bundle and JWT keys, and the federated bundles: the door the
 * bundle routes, the device routes and the servers' timers use.
 */
export class TrustBundles {
  /** Private keys loaded from the vault, by kid (each loaded once per process). */
  private readonly loaded = new Map<string, Promise<CryptoKey>>();

  constructor(
    private readonly deps: AuthorityDeps,
    private readonly refusals: Refusals,
  ) {}

  private vault(): JwtKeyVault {
    const vault = this.deps.jwtKeys;
    if (!vault) throw new AuthorityError("internal", "this server keeps no JWT signing keys", "jwt_keys_unavailable");
    return vault;
  }

  /** The bundle as served at `GET /spiffe/bundle` (anyone may read it). */
  bundle(): Promise<SpiffeBundle> {
    return trustBundle(this.deps);
  }

  /** The refresh hint in seconds: what the bundle's HTTP caching follows. */
  get refreshHint(): number {
    return this.deps.config.spiffe.refreshHint;
  }

  /**
   * `GET /workload/v1/bundles`: the device authenticates as on every workload route
   * (`authenticateWorkloadDevice`). Refusals are audited here once.
   */
  async forDevice(peer: PeerInfo): Promise<WorkloadBundles> {
    const caller: Caller = { actor: "anonymous" };
    try {
      await authenticateWorkloadDevice(this.deps, peer, caller);
      const [bundle, federated] = await Promise.all([this.bundle(), federatedBundles(this.deps)]);
      return { trustDomain: this.deps.config.trustDomain, bundle, federated };
    } catch (err) {
      const e = asAuthorityError(err);
      await this.refusals.record({ action: "workload.bundles", remote: peer.remoteAddress, ...caller }, e);
      throw e;
    }
  }

  /**
   * Signs a JWT-SVID with the active key. The caller (the JWT-SVID verb) has decided the
   * SPIFFE ID, audiences and lifetime are the caller's due, and audits the issuance.
   */
  signJwtSvid(req: JwtSvidRequest): Promise<SignedJwtSvid> {
    return signJwtSvid(this.deps, (k) => this.privateKey(k), req);
  }

  private privateKey(key: JwtKeyRecord): Promise<CryptoKey> {
    let p = this.loaded.get(key.kid);
    if (!p) {
      p = this.vault().load(key.kid, key.sealedKey);
      p.catch(() => this.loaded.delete(key.kid));
      this.loaded.set(key.kid, p);
    }
    return p;
  }

  /** Applies the JWT key schedule at the clock's time (the Node timer, the Worker's cron). */
  async rotate(): Promise<RotationResult> {
    const result = await rotateJwtKeys(this.deps, this.vault());
    for (const kid of result.removed) this.loaded.delete(kid);
    return result;
  }

  /** The federated bundles held, by trust domain. */
  federated(): Promise<Record<string, SpiffeBundle>> {
    return federatedBundles(this.deps);
  }

  /**
   * A foreign bundle as fetched from its endpoint: stored as the last good copy only if
   * it is a sane SPIFFE bundle (a ForeignBundleError otherwise, and the copy held stays).
   */
  storeFederated(trustDomain: string, endpoint: string, text: string): Promise<{ refreshAt: Date; changed: boolean }> {
    if (!this.deps.config.federation.some((f) => f.trustDomain === trustDomain)) {
      throw new Error(`trust domain ${trustDomain} is not configured for federation`);
    }
    return storeForeignBundle(this.deps, trustDomain, endpoint, text);
  }
}
