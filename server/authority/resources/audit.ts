import type { Actor } from "../actor.ts";
import type { DenialContext } from "../audit.ts";
import { verifyAuditChain } from "../audit-chain.ts";
import type { AuthorityError } from "../errors.ts";
import { readAudit } from "../fleet.ts";
import { type Door, yieldToOthers } from "./door.ts";

type ReadRequest = Parameters<typeof readAudit>[2];

/** The audit trail: read, verified, and the refusals a frontend decides before any verb runs. */
export class Audit {
  constructor(private readonly door: Door) {}

  list(actor: Actor, req: ReadRequest) {
    return this.door.run(actor, "audit.list", null, () => readAudit(this.door.deps, actor, req));
  }

  /** Checks the hash chain; between pages of a long log the server answers other requests. */
  verify(actor: Actor) {
    return this.door.run(actor, "audit.verify", null, () => verifyAuditChain(this.door.deps, actor, yieldToOthers));
  }

  /** A refusal decided in a frontend (authentication, media type, validation); one a verb recorded is not repeated. */
  refusal(ctx: DenialContext, err: AuthorityError): Promise<void> {
    return this.door.refuse(ctx, err);
  }
}
