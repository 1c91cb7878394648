import type { Actor } from "../../server/authority/actor.ts";
import type { Storage } from "../../server/ports/storage.ts";

/**
 * Registers the operator an Actor names (an active operator row), as `edgeid operators
 * create` would: operator actions are guarded on their operator still being active
 * when they commit, so a test's actor must exist.
 */
export async function registerOperator(h: { storage: Pick<Storage, "apply"> }, actor: Actor): Promise<Actor> {
  const id = actor.id.replace(/^operator:/, "");
  await h.storage.apply([
    {
      kind: "insertOperator",
      operator: {
        id,
        name: id,
        role: actor.role,
        tokenHash: `test-${id}-${actor.role}`,
        createdAt: new Date(0),
        expiresAt: null,
        revokedAt: null,
        createdBy: null,
      },
    },
  ]);
  return actor;
}
