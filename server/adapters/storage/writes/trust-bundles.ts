import { bundleRevisions, federatedBundles, jwtKeys } from "../schema.ts";
import { raw, rowInsert, toDriver, upsertRow, type WriteTable, writeOfFields } from "./write-entry.ts";

/** Writes of the trust domain's bundle (JWT keys, revisions) and of the federated bundles. */
export const trustBundleWrites = {
  insertJwtKey: rowInsert(jwtKeys, (w) => w.key),
  removeJwtKeys: writeOfFields(raw("DELETE FROM jwt_keys WHERE removed_at <= ?", "at")),
  insertBundleRevision: rowInsert(bundleRevisions, (w) => w.revision),
  putFederatedBundle: {
    statements: (db) => [upsertRow(db, federatedBundles, federatedBundles.trustDomain)],
    values: (w) => toDriver(federatedBundles, w.bundle),
  },
} satisfies Partial<WriteTable>;
