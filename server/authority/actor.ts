import type { OperatorRole } from "../ports/storage.ts";
import { AuthorityError } from "./errors.ts";

/** Who asks for an operator action: an operator token, or the local CLI. */
export interface Actor {
  /** "operator:<id>" or "cli". */
  id: string;
  role: OperatorRole;
  remote?: string | null;
}

/** The local command line acts with the data directory's own authority. */
export const CLI_ACTOR: Actor = { id: "cli", role: "admin" };

/** The server's own scheduled work (the hourly fleet audit): it only reads. */
export const SERVER_ACTOR: Actor = { id: "server", role: "auditor" };

const RANK: Record<OperatorRole, number> = { auditor: 0, operator: 1, admin: 2 };

/**
 * Role rules, in one place: `auditor` reads, `operator` also manages devices, tokens
 * and approvals, `admin` also manages operators.
 */
export function requireRole(actor: Actor, role: OperatorRole): void {
  if (!hasRole(actor, role)) {
    throw new AuthorityError("forbidden", `this needs the ${role} role (token has ${actor.role})`, "role_forbidden");
  }
}

/** Whether the actor's role includes `role` (for showing only the actions it may take). */
export function hasRole(actor: Actor, role: OperatorRole): boolean {
  return RANK[actor.role] >= RANK[role];
}
