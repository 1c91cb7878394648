import type { Actor } from "../actor.ts";
import { decideEnrollment } from "../approvals.ts";
import { listEnrollments } from "../inventory.ts";
import type { Door } from "./door.ts";

type ListRequest = Parameters<typeof listEnrollments>[2];

/** Enrollment requests that wait for an operator's decision. */
export class Enrollments {
  constructor(private readonly door: Door) {}

  list(actor: Actor, req: ListRequest) {
    return this.door.run(actor, "enrollment.list", null, () => listEnrollments(this.door.deps, actor, req));
  }

  approve(actor: Actor, id: string, reason?: string) {
    return this.decide(actor, id, "approve", reason);
  }

  reject(actor: Actor, id: string, reason?: string) {
    return this.decide(actor, id, "reject", reason);
  }

  decide(actor: Actor, id: string, decision: "approve" | "reject", reason?: string) {
    return this.door.run(actor, `enrollment.${decision}`, null, () =>
      decideEnrollment(this.door.deps, { id, decision, reason, actor }),
    );
  }
}
