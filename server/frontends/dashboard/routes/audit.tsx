/** @jsxImportSource hono/jsx */
import { yieldToOthers } from "../../http/pause.ts";
import { AuditPage } from "../pages/audit.tsx";
import { actor, type DashboardContext, invalid, PAGE, page, session } from "./context.ts";

/** The audit trail, and its hash chain on request. */
export function auditRoutes({ app, authority }: DashboardContext): void {
  app.get("/audit", async (c) => {
    c.set("action", "audit.list");
    const q = c.req.query();
    const filters = {
      actor: q.actor?.trim() || undefined,
      action: q.action?.trim() || undefined,
      deviceId: q.deviceId?.trim() || undefined,
    };
    if (
      (filters.actor?.length ?? 0) > 128 ||
      (filters.action?.length ?? 0) > 64 ||
      (filters.deviceId?.length ?? 0) > 129
    ) {
      throw invalid("a filter is too long");
    }
    const p = await authority.audit.list(actor(c), { ...filters, cursor: q.cursor || undefined, limit: PAGE });
    // Reading the whole chain yields to other requests between its pages.
    const chain = q.verify === "1" ? await authority.audit.verify(actor(c), yieldToOthers) : undefined;
    return page(
      c,
      <AuditPage session={session(c)} filters={filters} items={p.items} nextCursor={p.nextCursor} chain={chain} />,
    );
  });
}
