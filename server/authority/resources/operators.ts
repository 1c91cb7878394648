import type { OperatorRole } from "../../ports/storage.ts";
import type { Actor } from "../actor.ts";
import { authenticateOperator, createOperator, listOperators, revokeOperator } from "../operators.ts";
import {
  checkCsrfToken,
  closeDashboardSession,
  type DashboardSession,
  openDashboardSession,
  resumeDashboardSession,
} from "../sessions.ts";
import type { Door } from "./door.ts";

/**
 * Operators: who they are (a bearer token or a dashboard session makes an Actor), and
 * their management, which is the admin's.
 */
export class Operators {
  constructor(private readonly door: Door) {}

  /** The operator a bearer token names, if it is current (refusals are the caller's to audit, under its action). */
  authenticate(bearer: string | undefined, remote: string | null): Promise<Actor> {
    return authenticateOperator(this.door.deps, bearer, remote);
  }

  /** Signs in to the dashboard: a new session, its secret returned once. */
  openSession(bearer: string | undefined, remote: string | null) {
    return openDashboardSession(this.door.deps, bearer, remote);
  }

  resumeSession(secret: string | undefined, remote: string | null) {
    return resumeDashboardSession(this.door.deps, secret, remote);
  }

  closeSession(session: DashboardSession) {
    return closeDashboardSession(this.door.deps, session);
  }

  /** A form's CSRF token must be the session's. */
  checkCsrf(session: DashboardSession, presented: unknown): void {
    checkCsrfToken(session, presented);
  }

  list(actor: Actor) {
    return this.door.run(actor, "operator.list", null, () => listOperators(this.door.deps, actor));
  }

  /** A new operator and its token (in this answer only). */
  create(actor: Actor, req: { name: string; role: OperatorRole; ttl?: number }) {
    return this.door.run(actor, "operator.create", null, () => createOperator(this.door.deps, { ...req, actor }));
  }

  revoke(actor: Actor, id: string) {
    return this.door.run(actor, "operator.revoke", null, () => revokeOperator(this.door.deps, id, actor));
  }
}
