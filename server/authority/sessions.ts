import { base64url } from "../pki/base64.ts";
import type {
  DashboardSessionRecord,
  DeviceStatus,
  DeviceStatusRecord,
  FleetAuditRun,
  PendingEnrollment,
} from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest, forbidden, unauthenticated } from "./errors.ts";
import { authenticateOperator } from "./operators.ts";

type SessionDeps = Pick<AuthorityDeps, "storage" | "clock" | "crypto" | "digest">;

/** The cookie's secret: 256 random bits behind a recognisable prefix. */
export const SESSION_PREFIX = "eds_";
/** A session ends after this long without use... */
export const SESSION_IDLE_SECONDS = 30 * 60;
/** ...and after this long in any case (or when its operator token expires, if sooner). */
export const SESSION_MAX_SECONDS = 8 * 3600;
/** Use moves last-seen (a write) at most this often. */
const TOUCH_EVERY_MS = 60_000;

export interface DashboardSession {
  actor: Actor;
  operatorName: string;
  idHash: string;
  /** The synchronizer token that every state-changing form of this session carries. */
  csrfToken: string;
  expiresAt: Date;
  absoluteExpiresAt: Date;
}

const operatorIdOf = (actor: Actor) => actor.id.replace(/^operator:/, "");

/**
 * Signs an operator in to the dashboard with an operator token: a new session whose
 * secret (for the cookie) is returned once and stored as its SHA-256 only.
 */
export async function openDashboardSession(
  deps: SessionDeps,
  bearer: string | undefined,
  remote: string | null,
): Promise<{ secret: string; session: DashboardSession }> {
  const actor = await authenticateOperator(deps, bearer?.trim() || undefined, remote);
  const operator = await deps.storage.getOperator(operatorIdOf(actor));
  if (!operator) throw unauthenticated("operator_token_unknown", "operator token is not valid");
  const now = deps.clock.now();
  const secret = `${SESSION_PREFIX}${base64url(deps.crypto.getRandomValues(new Uint8Array(32)))}`;
  const csrfToken = base64url(deps.crypto.getRandomValues(new Uint8Array(32)));
  let absolute = now.getTime() + SESSION_MAX_SECONDS * 1000;
  if (operator.expiresAt) absolute = Math.min(absolute, operator.expiresAt.getTime());
  const record: DashboardSessionRecord = {
    idHash: await sha256Hex(deps.digest, secret),
    operatorId: operator.id,
    csrfToken,
    createdAt: now,
    lastSeenAt: now,
    expiresAt: new Date(Math.min(now.getTime() + SESSION_IDLE_SECONDS * 1000, absolute)),
    absoluteExpiresAt: new Date(absolute),
    remote,
  };
  await deps.storage.apply([
    // Sign-ins are rare: each one clears out sessions that ended.
    { kind: "purgeDashboardSessions", at: now },
    { kind: "insertDashboardSession", session: record },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "dashboard.login",
      outcome: "success",
      remote,
      detail: { operator: operator.name, role: operator.role, sessionEndsBy: record.absoluteExpiresAt.toISOString() },
    }),
  ]);
  return {
    secret,
    session: {
      actor,
      operatorName: operator.name,
      idHash: record.idHash,
      csrfToken,
      expiresAt: record.expiresAt,
      absoluteExpiresAt: record.absoluteExpiresAt,
    },
  };
}

/**
 * The session a cookie names, if it is current and its operator's token still works
 * (a revoked operator is signed out at once). Use extends the idle expiry.
 */
export async function resumeDashboardSession(
  deps: SessionDeps,
  secret: string | undefined,
  remote: string | null,
): Promise<DashboardSession> {
  if (!secret) throw unauthenticated("session_missing", "sign in with an operator token");
  const row =
    secret.startsWith(SESSION_PREFIX) && secret.length <= 128
      ? await deps.storage.getDashboardSession(await sha256Hex(deps.digest, secret))
      : undefined;
  if (!row) throw unauthenticated("session_unknown", "the session is not valid; sign in again");
  const now = deps.clock.now();
  if (row.expiresAt.getTime() <= now.getTime()) {
    throw unauthenticated("session_expired", "the session has ended; sign in again");
  }
  const operator = await deps.storage.getOperator(row.operatorId);
  if (!operator || operator.revokedAt) {
    throw unauthenticated("operator_token_revoked", "the operator token of this session has been revoked");
  }
  if (operator.expiresAt && operator.expiresAt.getTime() <= now.getTime()) {
    throw unauthenticated("operator_token_expired", "the operator token of this session has expired");
  }
  let expiresAt = row.expiresAt;
  if (now.getTime() - row.lastSeenAt.getTime() >= TOUCH_EVERY_MS) {
    expiresAt = new Date(Math.min(now.getTime() + SESSION_IDLE_SECONDS * 1000, row.absoluteExpiresAt.getTime()));
    await deps.storage.apply([{ kind: "touchDashboardSession", idHash: row.idHash, at: now, expiresAt }]);
  }
  return {
    actor: { id: `operator:${operator.id}`, role: operator.role, remote },
    operatorName: operator.name,
    idHash: row.idHash,
    csrfToken: row.csrfToken,
    expiresAt,
    absoluteExpiresAt: row.absoluteExpiresAt,
  };
}

export async function closeDashboardSession(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  session: DashboardSession,
): Promise<void> {
  await deps.storage.apply([
    { kind: "deleteDashboardSession", idHash: session.idHash },
    auditWrite({
      at: deps.clock.now(),
      actor: session.actor.id,
      action: "dashboard.logout",
      outcome: "success",
      remote: session.actor.remote ?? null,
      detail: {},
    }),
  ]);
}

/**
 * A state-changing form must carry its session's synchronizer token. Compared in
 * constant time; the token is never logged.
 */
export function checkCsrfToken(session: DashboardSession, presented: unknown): void {
  const expected = session.csrfToken;
  const given = typeof presented === "string" ? presented : "";
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ given.charCodeAt(i % (given.length || 1));
  if (diff !== 0) {
    throw forbidden(
      "csrf_token_invalid",
      "the form is missing its CSRF token or it is not this session's; reload the page",
    );
  }
}

/** The fleet's aggregates: whole-table counts, which a frontend may keep for a few seconds. */
export interface FleetAggregates {
  /** When they were counted. */
  at: Date;
  counts: Record<DeviceStatus, number>;
  /** Active devices whose certificate has already expired (they did not renew). */
  expired: number;
  /** Active devices by the day (from `at`) their certificate expires. */
  expiryByDay: number[];
}

export interface FleetOverview extends FleetAggregates {
  /** Active devices not heard from for `notSeenFor`, longest silent first. */
  notSeen: DeviceStatusRecord[];
  notSeenFor: number;
  pending: PendingEnrollment[];
  latestAudit: FleetAuditRun | undefined;
}

const DAY_MS = 86_400_000;

/**
 * Counts by status and certificate expiry per day: index scans whose cost grows with
 * the fleet (22 ms at 100,000 devices, about 200 ms at 1,000,000; `npm run bench`).
 */
export async function fleetAggregates(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  actor: Actor,
  days: number,
): Promise<FleetAggregates> {
  requireRole(actor, "auditor");
  if (!Number.isInteger(days) || days < 1 || days > 366) throw badRequest("bad_parameter", "days is 1-366");
  const now = deps.clock.now();
  const expiryByDay = new Array<number>(days).fill(0);
  for (const b of await deps.storage.expiryByBucket(now, new Date(now.getTime() + days * DAY_MS), DAY_MS)) {
    if (b.bucket >= 0 && b.bucket < days) expiryByDay[b.bucket] = b.count;
  }
  const [expiredRow] = await deps.storage.expiryByBucket(new Date(0), now, now.getTime() + 1);
  return { at: now, counts: await deps.storage.countDevicesByStatus(), expired: expiredRow?.count ?? 0, expiryByDay };
}

/**
 * What the dashboard's front page shows: the aggregates (given, when the caller keeps
 * them), and short lists that are always read afresh, each one bounded query.
 */
export async function fleetOverview(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  actor: Actor,
  opts: { days: number; notSeenFor: number; listLimit?: number; aggregates?: FleetAggregates },
): Promise<FleetOverview> {
  requireRole(actor, "auditor");
  const now = deps.clock.now();
  const limit = opts.listLimit ?? 10;
  const { storage } = deps;
  return {
    ...(opts.aggregates ?? (await fleetAggregates(deps, actor, opts.days))),
    notSeen: await storage.staleDevices(new Date(now.getTime() - opts.notSeenFor * 1000), limit),
    notSeenFor: opts.notSeenFor,
    pending: await storage.listPending({ status: "pending", limit }),
    latestAudit: await storage.latestFleetAudit(),
  };
}
