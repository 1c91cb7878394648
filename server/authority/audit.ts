import type { AuditEvent, Write } from "../ports/storage.ts";
import type { AuthorityDeps } from "./deps.ts";
import { AuthorityError } from "./errors.ts";

export function auditWrite(event: AuditEvent): Write {
  return { kind: "audit", event };
}

export interface DenialContext {
  action: string;
  actor: string;
  remote?: string | null;
  deviceId?: string | null;
  /** The certificate the refused request authenticated with. */
  serial?: string | null;
  /** A device id the client claimed that is not the one it was identified as. */
  claimed?: string | null;
}

/** Records a refused request against whoever the authority had identified. */
export async function recordDenial(deps: AuthorityDeps, ctx: DenialContext, err: AuthorityError): Promise<void> {
  await deps.storage.apply([
    auditWrite({
      at: deps.clock.now(),
      actor: ctx.actor,
      action: ctx.action,
      outcome: err.code === "internal" ? "error" : "denied",
      deviceId: ctx.deviceId ?? null,
      serial: ctx.serial ?? null,
      remote: ctx.remote ?? null,
      detail: {
        reason: err.reason,
        message: err.publicMessage,
        ...(ctx.claimed ? { claimedDevice: ctx.claimed } : {}),
      },
    }),
  ]);
}

export function asAuthorityError(err: unknown): AuthorityError {
  if (err instanceof AuthorityError) return err;
  return new AuthorityError("internal", "internal error; the request was not processed", "internal", { cause: err });
}
