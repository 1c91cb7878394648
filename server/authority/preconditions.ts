import {
  failedPrecondition,
  KEY_HOLDER_CONSTRAINT,
  type Precondition,
  type PreconditionName,
  StorageConflictError,
  type Write,
} from "../ports/storage.ts";
import type { Actor } from "./actor.ts";
import type { AuthorityDeps } from "./deps.ts";
import { conflict, forbidden } from "./errors.ts";

/** A fact the write set rests on, evaluated inside it (ports/storage.ts Precondition). */
export function guard(precondition: Precondition): Write {
  return { kind: "require", precondition };
}

/**
 * The operator behind an actor must still be active when its action commits (a token
 * revoked while the request was processed does not act). The local CLI and the server
 * itself are not operators and need no such guard.
 */
export function operatorGuards(actor: Actor, at: Date): Write[] {
  return actor.id.startsWith("operator:")
    ? [guard({ name: "operator_active", operatorId: actor.id.slice("operator:".length), at })]
    : [];
}

/**
 * Applies a write set whose decision was made on earlier reads. If a precondition no
 * longer holds, nothing was written; `recheck` then runs the request's checks again on
 * fresh reads, so the client gets the refusal it would have got had the change come
 * first (a revoked device, a used token…). Should every check pass again, another
 * request changed the same thing in between: 409, and the client may retry. A key that
 * another device claimed in between is refused as the up-front check would refuse it.
 * Other conflicts (uniqueness of a token's redemption, quotas) are the caller's to map.
 */
export async function applyGuarded(
  deps: Pick<AuthorityDeps, "storage">,
  writes: Write[],
  recheck: (failed: PreconditionName) => Promise<void>,
): Promise<void> {
  try {
    await deps.storage.apply(writes);
  } catch (err) {
    const failed = failedPrecondition(err);
    if (failed) {
      await recheck(failed);
      throw preconditionConflict(failed);
    }
    if (err instanceof StorageConflictError && err.constraint === KEY_HOLDER_CONSTRAINT) throw keyInUse();
    throw err;
  }
}

export function keyInUse() {
  return forbidden("key_in_use", "this public key is already certified for another device; generate a new key");
}

/** The refusal for a precondition that did not hold on a fresh check either. */
export function preconditionConflict(failed: PreconditionName) {
  if (failed === "operator_active") {
    return forbidden("operator_inactive", "the operator token was revoked or expired while the request was processed");
  }
  return conflict(
    "concurrent_change",
    `another request changed what this one rested on (${failed.replace(/_/g, " ")}) while it was processed; nothing was written, retry`,
  );
}
