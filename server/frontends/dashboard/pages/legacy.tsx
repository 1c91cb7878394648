/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession } from "../../../authority/sessions.ts";
import { when } from "../format.ts";
import { BASE, deviceHref, Layout } from "../layout.tsx";
import { type Expiring, Head, NextPage, query } from "./common.tsx";

/** Long-lived (legacy) certificates: the expiry report. */

export const LegacyPage: FC<{
  session: DashboardSession;
  profiles: string[];
  profile: string;
  within: string;
  items: Expiring[];
  nextCursor: string | null;
}> = ({ session, profiles, profile, within, items, nextCursor }) => (
  <Layout title="Legacy certificates" session={session} nav="legacy">
    <h1>Legacy certificates: expiry report</h1>
    <p class="muted">
      Long-lived certificates (RSA-only and agent-less appliances) do not renew themselves: each one needs its owner
      before it expires. Soonest first.
    </p>
    <form method="get" action={`${BASE}/legacy`} class="filters">
      <div>
        <label for="legacy-profile">Profile</label>
        <select id="legacy-profile" name="profile">
          {profiles.map((p) => (
            <option value={p} selected={p === profile}>
              {p}
            </option>
          ))}
        </select>
      </div>
      <div>
        <label for="legacy-within">Expiring within</label>
        <select id="legacy-within" name="within">
          {["7d", "30d", "90d", "180d", "365d", "730d"].map((w) => (
            <option value={w} selected={w === within}>
              {w}
            </option>
          ))}
        </select>
      </div>
      <button type="submit">Show</button>
      <a href={`${BASE}/legacy.csv${query({ profile, within })}`}>Download CSV</a>
    </form>
    {items.length === 0 ? (
      <p class="muted">No certificate of this profile expires within {within}.</p>
    ) : (
      <table data-testid="legacy">
        <Head
          cols={["Device", "Serial", "Expires", { label: "Days left", num: true }, "Owner", "Location", "Last seen"]}
        />
        <tbody>
          {items.map((r) => (
            <tr>
              <td>
                <a href={deviceHref(r.deviceId)}>{r.deviceId}</a>
              </td>
              <td>
                <code>{r.serial ?? "—"}</code>
              </td>
              <td>{when(r.notAfter)}</td>
              <td class="num">
                <span class={`badge ${r.daysLeft <= 7 ? "critical" : r.daysLeft <= 30 ? "medium" : "valid"}`}>
                  {r.daysLeft}
                </span>
              </td>
              <td>{r.owner ?? <span class="muted">no owner</span>}</td>
              <td>{r.location ?? "—"}</td>
              <td>{when(r.lastSeenAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
    <NextPage path="legacy" params={{ profile, within }} cursor={nextCursor} />
  </Layout>
);
