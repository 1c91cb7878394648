import type { InboundMessage, MessageOutcome } from "../../ports/fleet-link.ts";
import { type Actor, requireRole } from "../actor.ts";
import { type FleetAuditOptions, type FleetAuditReport, runFleetAudit } from "../fleet-audit.ts";
import { fleetCounts } from "../inventory.ts";
import { expiringReport } from "../lifecycle.ts";
import { type FleetAggregates, fleetAggregates, fleetOverview } from "../sessions.ts";
import type { Door } from "./door.ts";

/** Where a fleet loop runs, it runs the audit (and publishes the findings) and ingests device messages. */
export interface FleetLoopHandle {
  audit(actor: Actor, opts: FleetAuditOptions): Promise<FleetAuditReport>;
  receive?(m: InboundMessage): Promise<MessageOutcome>;
}

/** The fleet as a whole: counts, the overview, the fleet audit, reports, relayed device messages. */
export class Fleet {
  constructor(private readonly door: Door) {}

  summary(actor: Actor) {
    return this.door.run(actor, "fleet.summary", null, () => fleetCounts(this.door.deps, actor));
  }

  /** Whole-table counts over `days` (costly at scale: a frontend may keep them a few seconds). */
  aggregates(actor: Actor, days: number) {
    return this.door.run(actor, "dashboard.overview", null, () => fleetAggregates(this.door.deps, actor, days));
  }

  overview(actor: Actor, opts: { days: number; aggregates?: FleetAggregates }) {
    const notSeenFor = this.door.deps.config.fleet.notSeenFor;
    return this.door.run(actor, "dashboard.overview", null, () =>
      fleetOverview(this.door.deps, actor, { ...opts, notSeenFor }),
    );
  }

  /**
   * Runs the fleet audit: on the fleet loop where one runs (it publishes the findings),
   * else here. With `configured`, the configured thresholds apply where none is given.
   */
  audit(actor: Actor, opts: FleetAuditOptions & { configured?: boolean }, loop?: FleetLoopHandle) {
    const { configured, ...given } = opts;
    const { notSeenFor, cloneWindow, cloneTakeovers } = this.door.deps.config.fleet;
    // A threshold left unset (undefined) takes the configured one.
    const set = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as FleetAuditOptions;
    const o = configured ? { notSeenFor, cloneWindow, cloneTakeovers, ...set } : given;
    return this.door.run(actor, "fleet.audit", null, () =>
      loop ? loop.audit(actor, o) : runFleetAudit(this.door.deps, actor, o),
    );
  }

  /** Active devices whose certificate expires within a window, soonest first. */
  expiring(actor: Actor, req: Parameters<typeof expiringReport>[2]) {
    return this.door.run(actor, "report.expiring", null, () => expiringReport(this.door.deps, actor, req));
  }

  /**
   * Device messages relayed from a broker elsewhere, ingested one by one as the fleet
   * loop ingests its own. Null where no fleet loop ingests messages.
   */
  relay(actor: Actor, messages: InboundMessage[], loop?: FleetLoopHandle): Promise<MessageOutcome[] | null> {
    return this.door.run(actor, "fleet.messages", null, async () => {
      requireRole(actor, "operator");
      const receive = loop?.receive?.bind(loop);
      if (!receive) return null;
      const outcomes: MessageOutcome[] = [];
      for (const m of messages) outcomes.push(await receive(m));
      return outcomes;
    });
  }
}
