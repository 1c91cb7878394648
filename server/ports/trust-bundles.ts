/**
 * What the store keeps of the trust domain's SPIFFE bundle (the JWT signing keys, the
 * bundle's sequence) and of the foreign trust domains' bundles it federates with.
 */

/** One JWT-SVID signing key of the trust domain (ES256, P-256). */
export interface JwtKeyRecord {
  /** RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key. */
  kid: string;
  /** The public key as a JWK (kty, crv, x, y). */
  publicJwk: JsonWebKey;
  /**
   * The private key sealed for the store, where the runtime keeps keys there (Workers);
   * null where the runtime keeps it elsewhere (Node: an encrypted file in the data directory).
   */
  sealedKey: string | null;
  createdAt: Date;
  /** From here it signs (it is in the bundle from its creation, at least one refresh hint earlier). */
  activatesAt: Date;
  /** From here it no longer signs. */
  retiresAt: Date;
  /** From here it leaves the bundle: every token it signed has expired. */
  removedAt: Date;
}

/** One change of the published key set: the bundle's `spiffe_sequence`. */
export interface BundleRevision {
  sequence: number;
  at: Date;
  /** SHA-256 (hex) over the trust anchors and JWT key ids published at this revision. */
  digest: string;
  reason: string;
}

/** The last good copy of a foreign trust domain's bundle. */
export interface FederatedBundleRecord {
  trustDomain: string;
  /** The JWKS as fetched (JSON text, validated before it was stored). */
  jwks: string;
  /** Its spiffe_sequence, if it had one. */
  sequence: number | null;
  endpoint: string;
  fetchedAt: Date;
  /** When to fetch again (the foreign refresh hint, bounded). */
  refreshAt: Date;
}

export interface TrustBundleReads {
  /** Every JWT key in the bundle, oldest activation first. */
  listJwtKeys(): Promise<JwtKeyRecord[]>;
  /** The newest revision of the bundle, if any. */
  latestBundleRevision(): Promise<BundleRevision | undefined>;
  listFederatedBundles(): Promise<FederatedBundleRecord[]>;
}

export type TrustBundleWrite =
  /** A new JWT key (its kid is the primary key). */
  | { kind: "insertJwtKey"; key: JwtKeyRecord }
  /** The keys whose removal time has come leave the bundle. */
  | { kind: "removeJwtKeys"; at: Date }
  /**
   * A new revision of the bundle: its sequence is the primary key, so two processes
   * that both decided on the same change conflict (StorageConflictError "bundle_revisions").
   */
  | { kind: "insertBundleRevision"; revision: BundleRevision }
  /** The last good copy of a foreign bundle (replaces the previous one). */
  | { kind: "putFederatedBundle"; bundle: FederatedBundleRecord };

/**
 * Where the JWT keys' private halves live: an encrypted file in the data directory on
 * Node, sealed into the store with a key from the Worker's secrets on Workers.
 */
export interface JwtKeyVault {
  /**
   * Keeps a newly made private key (extractable, ECDSA P-256) under its kid; returns its
   * sealed form when the store is where it is kept, null otherwise.
   */
  keep(kid: string, privateKey: CryptoKey): Promise<string | null>;
  /** Discards a kept key whose record did not commit, or that left the bundle. */
  discard(kid: string): Promise<void>;
  /** The private key of kid, to sign with (non-extractable). */
  load(kid: string, sealedKey: string | null): Promise<CryptoKey>;
}
