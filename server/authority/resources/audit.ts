import type { Actor } from "../actor.ts";
import type { DenialContext } from "../audit.ts";
import { verifyAuditChain } from "../audit-chain.ts";
import type { AuthorityError } from "../errors.ts";
import { readAudit } from "../inventory.ts";
import type { Door } from "./door.ts";

type ReadRequest = Parameters<typeof readAudit>[2];

/** The audit trail: read, verified, and the refusals a frontend decides before any verb runs. */
export class Audit {
  constructor(private readonly door: Door) {}

  list(actor: Actor, req: ReadRequest) {
    return this.door.run(actor, "audit.list", null, () => readAudit(this.door.deps, actor, req));
  }

  /** Checks the hash chain; `afterPage` runs between pages of a long log (a server yields there). */
  verify(actor: Actor, afterPage?: () => Promise<void>) {
    return this.door.run(actor, "audit.verify", null, () => verifyAuditChain(this.door.deps, actor, afterPage));
  }

  /** A refusal decided in a frontend (authentication, media type, validation); one a verb recorded is not repeated. */
  refusal(ctx: DenialContext, err: AuthorityError): Promise<void> {
    return this.door.refuse(ctx, err);
  }
}
