import type { PendingEnrollment } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest, conflict, notFound } from "./errors.ts";
import { applyGuarded, guard, operatorGuards } from "./preconditions.ts";

/**
 * Operator decisions on enrollments that wait for approval (profile `approval:
 * manual`). Approving does not issue: the device's next retry of the same request
 * does, with its token redeemed in that same write set (enroll.ts).
 */
export async function decideEnrollment(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  req: { id: string; decision: "approve" | "reject"; reason?: string; actor: Actor },
): Promise<PendingEnrollment> {
  requireRole(req.actor, "operator");
  const pending = await deps.storage.getPending(req.id);
  if (!pending) throw notFound("unknown_enrollment", `no enrollment request ${req.id.slice(0, 64)}`);
  if (pending.status !== "pending") {
    throw conflict("already_decided", `enrollment request ${pending.id} is already ${pending.status}`);
  }
  const reason = req.reason?.trim() || null;
  if (reason && reason.length > 500) throw badRequest("reason_too_long", "a reason is at most 500 characters");
  const now = deps.clock.now();
  const status = req.decision === "approve" ? "approved" : "rejected";
  await applyGuarded(
    deps,
    [
      guard({ name: "pending_status", id: pending.id, status: "pending" }),
      ...operatorGuards(req.actor, now),
      {
        kind: "decidePending",
        id: pending.id,
        from: "pending",
        status,
        at: now,
        by: req.actor.id,
        reason,
        serial: null,
      },
      auditWrite({
        at: now,
        actor: req.actor.id,
        action: `enrollment.${req.decision}`,
        outcome: "success",
        deviceId: pending.deviceId,
        remote: req.actor.remote ?? null,
        detail: { requestId: pending.id, ...(reason ? { reason } : {}) },
      }),
    ],
    async () => {
      const again = await deps.storage.getPending(pending.id);
      if (again && again.status !== "pending") {
        throw conflict("already_decided", `enrollment request ${pending.id} is already ${again.status}`);
      }
    },
  );
  return { ...pending, status, decidedAt: now, decidedBy: req.actor.id, decisionReason: reason, updatedAt: now };
}
