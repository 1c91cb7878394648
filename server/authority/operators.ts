import { base64url } from "../pki/base64.ts";
import type { OperatorRole } from "../ports/storage.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";

/** Creates an operator and returns its bearer token (shown once, stored hashed). */
export async function createOperator(
  deps: Pick<AuthorityDeps, "storage" | "clock" | "crypto" | "digest">,
  req: { name: string; role: OperatorRole; actor: string },
): Promise<{ id: string; token: string }> {
  const id = `op_${base64url(deps.crypto.getRandomValues(new Uint8Array(9)))}`;
  const token = `edo_${base64url(deps.crypto.getRandomValues(new Uint8Array(32)))}`;
  const now = deps.clock.now();
  await deps.storage.apply([
    {
      kind: "insertOperator",
      operator: {
        id,
        name: req.name,
        role: req.role,
        tokenHash: await sha256Hex(deps.digest, token),
        createdAt: now,
        revokedAt: null,
      },
    },
    auditWrite({
      at: now,
      actor: req.actor,
      action: "operator.create",
      outcome: "success",
      detail: { operatorId: id, role: req.role },
    }),
  ]);
  return { id, token };
}
