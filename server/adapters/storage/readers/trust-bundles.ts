import { asc, desc } from "drizzle-orm";
import type { BundleRevision, FederatedBundleRecord, JwtKeyRecord } from "../../../ports/trust-bundles.ts";
import { bundleRevisions, federatedBundles, jwtKeys } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** The trust domain's JWT keys and bundle revisions, and the federated bundles. */
export function trustBundleReaders<B extends ConnectionClass>(Base: B) {
  return class TrustBundleReaders extends Base {
    async listJwtKeys(): Promise<JwtKeyRecord[]> {
      return this.db.select().from(jwtKeys).orderBy(asc(jwtKeys.activatesAt), asc(jwtKeys.kid)).all();
    }

    async latestBundleRevision(): Promise<BundleRevision | undefined> {
      const rows = await this.db.select().from(bundleRevisions).orderBy(desc(bundleRevisions.sequence)).limit(1).all();
      return rows[0];
    }

    async listFederatedBundles(): Promise<FederatedBundleRecord[]> {
      return this.db.select().from(federatedBundles).orderBy(asc(federatedBundles.trustDomain)).all();
    }
  };
}
