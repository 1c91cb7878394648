import { base64url } from "../pki/base64.ts";
import type { OperatorRecord, OperatorRole } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest, conflict, notFound, unauthenticated } from "./errors.ts";

type OperatorDeps = Pick<AuthorityDeps, "storage" | "clock" | "crypto" | "digest">;

export const OPERATOR_TOKEN_PREFIX = "edo_";

export interface CreateOperatorRequest {
  name: string;
  role: OperatorRole;
  /** Seconds until the token stops working; none = until revoked. */
  ttl?: number;
  actor: Actor;
}

/** Creates an operator and returns its bearer token (shown once, stored hashed). */
export async function createOperator(
  deps: OperatorDeps,
  req: CreateOperatorRequest,
): Promise<{ operator: OperatorRecord; token: string }> {
  requireRole(req.actor, "admin");
  if (!/^[\w .@-]{1,64}$/.test(req.name)) {
    throw badRequest("bad_operator_name", "an operator name is 1-64 letters, digits, spaces or . _ @ -");
  }
  const id = `op_${base64url(deps.crypto.getRandomValues(new Uint8Array(9)))}`;
  const token = `${OPERATOR_TOKEN_PREFIX}${base64url(deps.crypto.getRandomValues(new Uint8Array(32)))}`;
  const now = deps.clock.now();
  const operator: OperatorRecord = {
    id,
    name: req.name,
    role: req.role,
    tokenHash: await sha256Hex(deps.digest, token),
    createdAt: now,
    expiresAt: req.ttl ? new Date(now.getTime() + req.ttl * 1000) : null,
    revokedAt: null,
    createdBy: req.actor.id,
  };
  await deps.storage.apply([
    { kind: "insertOperator", operator },
    auditWrite({
      at: now,
      actor: req.actor.id,
      action: "operator.create",
      outcome: "success",
      remote: req.actor.remote ?? null,
      detail: { operatorId: id, name: req.name, role: req.role, expiresAt: operator.expiresAt?.toISOString() ?? null },
    }),
  ]);
  return { operator, token };
}

/**
 * The operator a bearer token names, if it is current. Lookup is by the SHA-256 of
 * the token (256 random bits), so timing reveals nothing useful.
 */
export async function authenticateOperator(
  deps: Pick<AuthorityDeps, "storage" | "clock" | "digest">,
  bearer: string | undefined,
  remote: string | null,
): Promise<Actor> {
  if (!bearer) throw unauthenticated("operator_token_missing", "send an operator token: Authorization: Bearer edo_…");
  const operator =
    bearer.startsWith(OPERATOR_TOKEN_PREFIX) && bearer.length <= 128
      ? await deps.storage.getOperatorByTokenHash(await sha256Hex(deps.digest, bearer))
      : undefined;
  if (!operator) throw unauthenticated("operator_token_unknown", "operator token is not valid");
  if (operator.revokedAt) throw unauthenticated("operator_token_revoked", "operator token has been revoked");
  if (operator.expiresAt && operator.expiresAt.getTime() <= deps.clock.now().getTime()) {
    throw unauthenticated("operator_token_expired", `operator token expired at ${operator.expiresAt.toISOString()}`);
  }
  return { id: `operator:${operator.id}`, role: operator.role, remote };
}

export async function listOperators(deps: Pick<AuthorityDeps, "storage">, actor: Actor): Promise<OperatorRecord[]> {
  requireRole(actor, "admin");
  return deps.storage.listOperators();
}

/** Revokes an operator's token; the last active admin cannot be revoked (nobody could manage operators). */
export async function revokeOperator(deps: OperatorDeps, id: string, actor: Actor): Promise<OperatorRecord> {
  requireRole(actor, "admin");
  const operator = await deps.storage.getOperator(id);
  if (!operator) throw notFound("unknown_operator", `no operator ${id.slice(0, 64)}`);
  if (operator.revokedAt) throw conflict("already_revoked", `operator ${id} is already revoked`);
  const now = deps.clock.now();
  if (operator.role === "admin") {
    const admins = (await deps.storage.listOperators()).filter(
      (o) => o.role === "admin" && !o.revokedAt && (!o.expiresAt || o.expiresAt.getTime() > now.getTime()),
    );
    if (admins.length <= 1) throw conflict("last_admin", "this is the last active admin; create another admin first");
  }
  await deps.storage.apply([
    { kind: "revokeOperator", operatorId: id, at: now },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "operator.revoke",
      outcome: "success",
      remote: actor.remote ?? null,
      detail: { operatorId: id, name: operator.name, role: operator.role },
    }),
  ]);
  return { ...operator, revokedAt: now };
}
