/** @jsxImportSource hono/jsx */
import type { Context } from "hono";
import { isDuration, parseDuration } from "../../../config/duration.ts";
import { expiringView } from "../../http/views.ts";
import { csv } from "../format.ts";
import { LegacyPage } from "../pages/legacy.tsx";
import { actor, type DashboardContext, type Env, invalid, page, session } from "./context.ts";

/** Long-lived (legacy) certificates: the expiry report, on a page and as CSV. */
export function legacyRoutes({ app, authority, profiles }: DashboardContext): void {
  /** Profiles with lifecycle controls: long-lived certificates with expiry alerts, or the RSA issuer. */
  const legacyProfiles = [...authority.profiles.values()]
    .filter((p) => p.expiryAlerts.length > 0 || p.issuer === "issuing-rsa")
    .map((p) => p.name);
  const legacyQuery = (c: Context<Env>) => {
    const profile = c.req.query("profile") || (legacyProfiles.includes("legacy") ? "legacy" : legacyProfiles[0]);
    const within = c.req.query("within") || "90d";
    if (!profile || !profiles.includes(profile)) throw invalid("unknown profile");
    if (!isDuration(within)) throw invalid("within: a duration such as 90d");
    return { profile, within };
  };

  app.get("/legacy", async (c) => {
    c.set("action", "report.expiring");
    const { profile, within } = legacyQuery(c);
    const p = await authority.fleet.expiring(actor(c), {
      within: parseDuration(within),
      profile,
      cursor: c.req.query("cursor") || undefined,
      limit: 100,
    });
    return page(
      c,
      <LegacyPage
        session={session(c)}
        profiles={legacyProfiles.includes(profile) ? legacyProfiles : [...legacyProfiles, profile]}
        profile={profile}
        within={within}
        items={p.items.map(expiringView)}
        nextCursor={p.nextCursor}
      />,
    );
  });

  app.get("/legacy.csv", async (c) => {
    c.set("action", "report.expiring");
    const { profile, within } = legacyQuery(c);
    const rows: (string | number | null)[][] = [
      ["device_id", "profile", "serial", "not_after", "days_left", "owner", "location", "last_seen"],
    ];
    let cursor: string | undefined;
    // At most 50,000 rows in one download.
    for (let i = 0; i < 50; i++) {
      const p = await authority.fleet.expiring(actor(c), {
        within: parseDuration(within),
        profile,
        cursor,
        limit: 1000,
      });
      for (const r of p.items.map(expiringView)) {
        rows.push([r.deviceId, r.profile, r.serial, r.notAfter, r.daysLeft, r.owner, r.location, r.lastSeenAt]);
      }
      if (!p.nextCursor) break;
      cursor = p.nextCursor;
    }
    return c.body(csv(rows), 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="edgeid-expiring-${profile}-${within}.csv"`,
    });
  });
}
