import type { Actor } from "../actor.ts";
import { issueTokens, listTokens, revokeToken, type TokenListRequest } from "../inventory.ts";
import { batchDeviceIds, checkTokenCount } from "../tokens.ts";
import type { Door } from "./door.ts";

export interface TokenBatch {
  /** The devices, or a numbered series of them (`<prefix><number>`). */
  deviceIds?: string[];
  /** `width`: the digits numbers are padded to, for one part of a larger series (default: this series' own). */
  series?: { prefix: string; start: number; count: number; width?: number };
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
      // A series is held to the verb's limit before its ids are made.
      if (series) checkTokenCount(series.count);
      const ids = series ? batchDeviceIds(series.prefix, series.start, series.count, series.width) : deviceIds;
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
