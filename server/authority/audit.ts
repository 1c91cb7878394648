import type { AuditEvent, Write } from "../ports/storage.ts";
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
  /** The client's address for its refusal budget, when `remote` says more (an MQTT peer's port). */
  address?: string | null;
  /** More of what was refused, for the record (never secrets). */
  detail?: Record<string, string | number | boolean | null>;
}

export function asAuthorityError(err: unknown): AuthorityError {
  if (err instanceof AuthorityError) return err;
  return new AuthorityError("internal", "internal error; the request was not processed", "internal", { cause: err });
}
