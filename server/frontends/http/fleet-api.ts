import type { Actor } from "../../authority/actor.ts";
import type { FleetAuditOptions, FleetAuditReport } from "../../authority/fleet-audit.ts";
import type { InboundMessage, MessageOutcome } from "../../ports/fleet-link.ts";

/** What the HTTP frontends need of the fleet loop, where one runs. */
export interface FleetApi {
  audit(actor: Actor, opts: FleetAuditOptions): Promise<FleetAuditReport>;
  /** Ingests one device message as the broker would hand it over (status, events, command results). */
  receive?(m: InboundMessage): Promise<MessageOutcome>;
}
