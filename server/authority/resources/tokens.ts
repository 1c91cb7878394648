import type { Actor } from "../actor.ts";
import { badRequest } from "../errors.ts";
import { issueTokens, listTokens, revokeToken, type TokenListRequest } from "../inventory.ts";
import { batchDeviceIds } from "../tokens.ts";
import type { Door } from "./door.ts";

/** Most bootstrap tokens one operator request creates. */
export const MAX_TOKEN_BATCH = 10_000;

export interface TokenBatch {
  /** The devices, or a numbered series of them (`<prefix><number>`). */
  deviceIds?: string[];
  series?: { prefix: string; start: number; count: number };
  profile?: string;
  /** Seconds. */
  ttl?: number;
  names?: { dns?: string[]; ip?: string[] };
}

/** Bootstrap tokens: created for devices, listed without their secrets, revoked while unused. */
export class Tokens {
  constructor(private readonly door: Door) {}

  create(actor: Actor, batch: TokenBatch) {
    return this.door.run(actor, "token.create", null, () => {
      const { deviceIds = [], series, ...rest } = batch;
      const count = series ? series.count : deviceIds.length;
      if (count > MAX_TOKEN_BATCH)
        throw badRequest("invalid_request", `at most ${MAX_TOKEN_BATCH} devices per request`);
      const ids = series ? batchDeviceIds(series.prefix, series.start, series.count) : deviceIds;
      return issueTokens(this.door.deps, actor, { ...rest, deviceIds: ids });
    });
  }

  list(actor: Actor, req: TokenListRequest) {
    return this.door.run(actor, "token.list", null, () => listTokens(this.door.deps, actor, req));
  }

  revoke(actor: Actor, id: string) {
    return this.door.run(actor, "token.revoke", null, () => revokeToken(this.door.deps, actor, id));
  }
}
