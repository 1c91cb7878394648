/** @jsxImportSource hono/jsx */
import { REVOCATION_REASONS, type RevocationReason } from "../../../authority/revoke.ts";
import { parseDuration } from "../../../config/duration.ts";
import { deviceView } from "../../http/views.ts";
import { deviceHref } from "../layout.tsx";
import { ConfirmRevokePage, DeviceListPage, DevicePage, EXPIRING_CHOICES } from "../pages/devices.tsx";
import { actor, type DashboardContext, field, invalid, PAGE, page, session, withNotice } from "./context.ts";

/** The device list, one device, and what an operator does to it. */
export function deviceRoutes({ app, authority, profiles }: DashboardContext): void {
  const trustDomain = authority.config.trustDomain;

  app.get("/devices", async (c) => {
    c.set("action", "device.list");
    const q = c.req.query();
    const status = q.status || undefined;
    if (status && !["pending", "active", "revoked", "decommissioned"].includes(status)) throw invalid("unknown state");
    const profile = q.profile || undefined;
    if (profile && !profiles.includes(profile)) throw invalid("unknown profile");
    const expiring = q.expiring || undefined;
    if (expiring && !EXPIRING_CHOICES.includes(expiring)) throw invalid("expiring is one of the listed choices");
    const search = q.q?.trim() || undefined;
    const p = await authority.devices.list(actor(c), {
      status: status as "active" | undefined,
      profile,
      expiringWithin: expiring === undefined ? undefined : expiring === "0s" ? 0 : parseDuration(expiring),
      idPrefix: search,
      cursor: q.cursor || undefined,
      limit: PAGE,
    });
    return page(
      c,
      <DeviceListPage
        session={session(c)}
        filters={{ q: search, status, profile, expiring }}
        profiles={profiles}
        items={p.items.map((d) => deviceView(d, trustDomain))}
        nextCursor={p.nextCursor}
        paged={Boolean(q.cursor)}
        now={authority.now()}
      />,
    );
  });

  app.get("/devices/:id", async (c) => {
    c.set("action", "device.show");
    const id = c.req.param("id");
    const detail = await authority.devices.show(actor(c), id);
    const pending = await authority.enrollments.list(actor(c), { deviceId: id, limit: 20 });
    const profile = authority.profiles.get(detail.device.profile);
    return page(
      c,
      <DevicePage
        session={session(c)}
        detail={detail}
        pending={pending.items}
        trustDomain={trustDomain}
        isGateway={Boolean(profile?.gateway)}
        now={authority.now()}
        notice={c.req.query("notice")}
      />,
    );
  });

  app.post("/devices/:id/revoke", async (c) => {
    c.set("action", "device.revoke");
    const id = c.req.param("id");
    const reason = field(c, "reason") ?? "";
    if (!(reason in REVOCATION_REASONS))
      throw invalid(`reason is one of ${Object.keys(REVOCATION_REASONS).join(", ")}`);
    const decommission = field(c, "decommission") === "yes";
    const cascade = field(c, "cascade") === "yes";
    if (field(c, "confirm") !== "yes") {
      // The confirmation step: shown only to a role that may revoke, about a device that exists.
      const detail = await authority.devices.confirmRevoke(actor(c), id);
      return page(
        c,
        <ConfirmRevokePage
          session={session(c)}
          detail={detail}
          reason={reason}
          decommission={decommission}
          cascade={cascade}
          now={authority.now()}
        />,
      );
    }
    await authority.devices.revoke(actor(c), id, { reason: reason as RevocationReason, decommission, cascade });
    return c.redirect(withNotice(deviceHref(id), decommission ? "decommissioned" : "revoked"), 303);
  });

  app.post("/devices/:id/reinstate", async (c) => {
    c.set("action", "device.reinstate");
    const id = c.req.param("id");
    await authority.devices.reinstate(actor(c), id, "from the dashboard");
    return c.redirect(withNotice(deviceHref(id), "reinstated"), 303);
  });

  app.post("/devices/:id/metadata", async (c) => {
    c.set("action", "device.metadata");
    const id = c.req.param("id");
    // An emptied field clears the value.
    const text = (name: string) => field(c, name)?.trim() || null;
    await authority.devices.label(actor(c), id, { owner: text("owner"), location: text("location") });
    return c.redirect(withNotice(deviceHref(id), "metadata-saved"), 303);
  });

  app.post("/devices/:id/rotate", async (c) => {
    c.set("action", "command.create");
    const id = c.req.param("id");
    await authority.devices.rotate(actor(c), id);
    return c.redirect(withNotice(deviceHref(id), "rotate-queued"), 303);
  });
}
