import { asc, desc, eq, gt, isNotNull, isNull, lte, type SQL } from "drizzle-orm";
import type { TokenQuery, TokenRecord } from "../../../ports/storage.ts";
import { bootstrapTokens } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** Bootstrap tokens: by id or secret hash, per device, and by state. */
export function tokenReaders<B extends ConnectionClass>(Base: B) {
  return class TokenReaders extends Base {
    async getToken(id: string): Promise<TokenRecord | undefined> {
      return this.findOne(bootstrapTokens, bootstrapTokens.id, id);
    }

    async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
      return this.findOne(bootstrapTokens, bootstrapTokens.hash, hash);
    }

    async listTokens(deviceId: string): Promise<TokenRecord[]> {
      return this.db
        .select()
        .from(bootstrapTokens)
        .where(eq(bootstrapTokens.deviceId, deviceId))
        .orderBy(desc(bootstrapTokens.createdAt))
        .all();
    }

    async queryTokens(q: TokenQuery): Promise<TokenRecord[]> {
      const conds: (SQL | undefined)[] = [];
      if (q.deviceId) conds.push(eq(bootstrapTokens.deviceId, q.deviceId));
      if (q.after) conds.push(gt(bootstrapTokens.id, q.after));
      switch (q.state) {
        case "unused":
          conds.push(
            isNull(bootstrapTokens.usedAt),
            isNull(bootstrapTokens.revokedAt),
            gt(bootstrapTokens.expiresAt, q.now),
          );
          break;
        case "used":
          conds.push(isNotNull(bootstrapTokens.usedAt));
          break;
        case "revoked":
          conds.push(isNotNull(bootstrapTokens.revokedAt));
          break;
        case "expired":
          conds.push(isNull(bootstrapTokens.usedAt), lte(bootstrapTokens.expiresAt, q.now));
          break;
      }
      return this.page(bootstrapTokens, conds, [asc(bootstrapTokens.id)], q.limit);
    }
  };
}
