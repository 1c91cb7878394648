/** @jsxImportSource hono/jsx */
import type { PendingStatus } from "../../../ports/storage.ts";
import { EnrollmentsPage } from "../pages/enrollments.tsx";
import { actor, type DashboardContext, field, invalid, PAGE, page, safeBack, session, withNotice } from "./context.ts";

/** Approvals: enrollment requests and the operator's decision. */
export function enrollmentRoutes({ app, authority }: DashboardContext): void {
  app.get("/enrollments", async (c) => {
    c.set("action", "enrollment.list");
    const status = (c.req.query("status") || "pending") as PendingStatus;
    if (!["pending", "approved", "rejected", "issued"].includes(status)) throw invalid("unknown status");
    const p = await authority.enrollments.list(actor(c), {
      status,
      cursor: c.req.query("cursor") || undefined,
      limit: PAGE,
    });
    return page(
      c,
      <EnrollmentsPage
        session={session(c)}
        status={status}
        items={p.items}
        nextCursor={p.nextCursor}
        notice={c.req.query("notice")}
      />,
    );
  });

  app.post("/enrollments/:id/decide", async (c) => {
    const decision = field(c, "decision");
    if (decision !== "approve" && decision !== "reject") throw invalid("decision is approve or reject");
    c.set("action", `enrollment.${decision}`);
    await authority.enrollments.decide(actor(c), c.req.param("id"), decision, field(c, "reason"));
    return c.redirect(withNotice(safeBack(field(c, "back")), decision === "approve" ? "approved" : "rejected"), 303);
  });
}
