/** @jsxImportSource hono/jsx */
import type { RegisterWorkloadRequest } from "../../../authority/workloads.ts";
import { isDuration, parseDuration } from "../../../config/duration.ts";
import { BASE } from "../layout.tsx";
import { WorkloadsPage } from "../pages/workloads.tsx";
import { actor, type DashboardContext, field, invalid, PAGE, page, session } from "./context.ts";

/** The lines of a textarea, trimmed, empty ones left out. */
const lines = (text: string | undefined) =>
  (text ?? "")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);

/** Workload registration entries: listed (by the device they apply to), registered, deleted. */
export function workloadRoutes({ app, authority, profiles }: DashboardContext): void {
  app.get("/workloads", async (c) => {
    c.set("action", "workload.list");
    const device = c.req.query("device")?.trim() || undefined;
    const p = await authority.workloads.list(actor(c), {
      device,
      cursor: c.req.query("cursor") || undefined,
      limit: PAGE,
    });
    return page(
      c,
      <WorkloadsPage
        session={session(c)}
        trustDomain={authority.config.trustDomain}
        profiles={profiles}
        items={p.items}
        device={device}
        nextCursor={p.nextCursor}
        notice={c.req.query("notice")}
      />,
    );
  });

  app.post("/workloads", async (c) => {
    c.set("action", "workload.register");
    const kind = field(c, "parentKind");
    const parent = field(c, "parent")?.trim() ?? "";
    const ttlText = field(c, "ttl")?.trim() || undefined;
    if (ttlText && !isDuration(ttlText)) throw invalid("SVID lifetime: a duration such as 1h or 30m");
    const req: RegisterWorkloadRequest = {
      name: field(c, "name")?.trim() ?? "",
      selectors: lines(field(c, "selectors")),
      ttl: ttlText ? parseDuration(ttlText) : undefined,
      jwtAudiences: lines(field(c, "jwtAudiences")),
      fleetWide: field(c, "fleetWide") === "1",
    };
    if (kind === "device") req.device = parent;
    else if (kind === "profile") req.profile = parent;
    else if (kind === "prefix") req.devicePrefix = parent;
    else throw invalid("parent: one device, a profile or a device-id prefix");
    await authority.workloads.register(actor(c), req);
    return c.redirect(
      `${BASE}/workloads?notice=workload-registered&device=${encodeURIComponent(req.device ?? "")}`,
      303,
    );
  });

  app.post("/workloads/:id/delete", async (c) => {
    c.set("action", "workload.delete");
    await authority.workloads.delete(actor(c), c.req.param("id"));
    return c.redirect(`${BASE}/workloads?notice=workload-deleted`, 303);
  });
}
