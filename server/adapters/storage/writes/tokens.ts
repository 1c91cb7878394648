import { eq, sql } from "drizzle-orm";
import { bootstrapTokens } from "../schema.ts";
import { raw, rowInsert, type WriteTable, writeOfFields } from "./write-entry.ts";

/** Writes to bootstrap tokens: creation, redemption (a single use), revocation. */
export const tokenWrites = {
  insertToken: rowInsert(bootstrapTokens, (w) => w.token),
  redeemToken: {
    statements: (db) => [
      db
        .update(bootstrapTokens)
        .set({ usedAt: sql`${sql.placeholder("at")}`, usedSerial: sql`${sql.placeholder("serial")}` })
        .where(eq(bootstrapTokens.id, sql.placeholder("tokenId")))
        .toSQL(),
    ],
    values: (w) => ({ tokenId: w.tokenId, at: w.at.getTime(), serial: w.serial }),
  },
  revokeToken: writeOfFields(
    raw(
      "UPDATE bootstrap_tokens SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
      "at",
      "tokenId",
    ),
  ),
} satisfies Partial<WriteTable>;
