/** @jsxImportSource hono/jsx */
import { yieldToOthers } from "../../http/pause.ts";
import { BASE } from "../layout.tsx";
import { OverviewPage } from "../pages/overview.tsx";
import { actor, type DashboardContext, invalid, page, session } from "./context.ts";

/** How long the overview's whole-table counts are kept. */
const AGGREGATES_TTL_MS = 10_000;

/** The overview, and running the fleet audit from it. */
export function overviewRoutes({ app, authority, fleet, aggregates: aggregateCache }: DashboardContext): void {
  app.get("/", async (c) => {
    c.set("action", "dashboard.overview");
    const days = Number(c.req.query("days") ?? 30);
    if (![7, 30, 90].includes(days)) throw invalid("days is 7, 30 or 90");
    // Whole-table counts are kept a few seconds (any change made here drops them): at a
    // million devices they take ~200 ms, which would otherwise stall the server per view.
    let aggregates = aggregateCache.get(days);
    if (!aggregates || authority.now().getTime() - aggregates.at.getTime() >= AGGREGATES_TTL_MS) {
      aggregates = await authority.fleet.aggregates(actor(c), days);
      aggregateCache.set(days, aggregates);
    }
    const o = await authority.fleet.overview(actor(c), { days, aggregates });
    return page(c, <OverviewPage session={session(c)} o={o} days={days} notice={c.req.query("notice")} />);
  });

  app.post("/audit/run", async (c) => {
    c.set("action", "fleet.audit");
    // The configured thresholds, on the fleet loop where one runs.
    await authority.fleet.audit(actor(c), { configured: true, afterChunk: yieldToOthers }, fleet);
    return c.redirect(`${BASE}?notice=audit-done`, 303);
  });
}
