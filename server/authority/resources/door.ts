import type { Actor } from "../actor.ts";
import type { DenialContext } from "../audit.ts";
import type { AuthorityDeps } from "../deps.ts";
import { AuthorityError } from "../errors.ts";
import type { Refusals } from "../refusals.ts";

/** What every resource of the core's door shares: the dependencies, and which refusals are on record. */
export class Door {
  private readonly recorded = new WeakSet<AuthorityError>();

  constructor(
    readonly deps: AuthorityDeps,
    readonly refusals: Refusals,
  ) {}

  /**
   * Runs one operator verb. A refusal is audited here, once, under the verb's action
   * (an internal error is not a refusal: the caller reports it).
   */
  async run<T>(actor: Actor, action: string, deviceId: string | null, verb: () => Promise<T> | T): Promise<T> {
    try {
      return await verb();
    } catch (err) {
      if (err instanceof AuthorityError) {
        await this.refuse({ action, actor: actor.id, remote: actor.remote ?? null, deviceId }, err);
      }
      throw err;
    }
  }

  /** Records a refusal unless it is on record already; internal errors are not refusals. */
  async refuse(ctx: DenialContext, err: AuthorityError): Promise<void> {
    if (err.code === "internal" || this.recorded.has(err)) return;
    this.recorded.add(err);
    // Path ids are at most 160 characters in the records.
    await this.refusals.record({ ...ctx, deviceId: ctx.deviceId?.slice(0, 160) ?? null }, err);
  }
}
