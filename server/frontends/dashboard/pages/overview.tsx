/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession, FleetOverview } from "../../../authority/sessions.ts";
import { ExpiryChart } from "../chart.tsx";
import { plural, relative, span, when } from "../format.ts";
import { BASE, Badge, Csrf, deviceHref, Layout } from "../layout.tsx";
import { Head, PendingTable } from "./common.tsx";

/** The overview: fleet health, expiry chart, approvals waiting. */

export const OverviewPage: FC<{ session: DashboardSession; o: FleetOverview; days: number; notice?: string }> = ({
  session,
  o,
  days,
  notice,
}) => {
  const audit = o.latestAudit;
  return (
    <Layout title="Overview" session={session} nav="overview" notice={notice}>
      <h1>Fleet overview</h1>
      <div class="cards" data-testid="counts">
        {(["active", "pending", "revoked", "decommissioned"] as const).map((s) => (
          <a class="count" href={`${BASE}/devices?status=${s}`} data-status={s}>
            <span class="n">{o.counts[s].toLocaleString("en-US")}</span>
            <span class="label">{s}</span>
          </a>
        ))}
        <a class="count" href={`${BASE}/devices?status=active&expiring=0s`} data-status="expired">
          <span class="n">{o.expired.toLocaleString("en-US")}</span>
          <span class="label">active, certificate expired</span>
        </a>
      </div>

      <h2>Certificate expiry, next {days} days</h2>
      <p class="muted">
        Active devices by the day their current certificate expires (red: within a week).{" "}
        {[7, 30, 90].map((d) => (
          <>{d === days ? <strong>{d} days</strong> : <a href={`${BASE}?days=${d}`}>{d} days</a>} </>
        ))}
      </p>
      <ExpiryChart byDay={o.expiryByDay} now={o.at} />

      <div class="grid2">
        <section>
          <h2>Not seen for {span(o.notSeenFor)}</h2>
          {o.notSeen.length === 0 ? (
            <p class="muted">Every active device that reports over MQTT has been heard from.</p>
          ) : (
            <table data-testid="not-seen">
              <Head cols={["Device", "Last seen", "Last state"]} />
              <tbody>
                {o.notSeen.map((s) => (
                  <tr>
                    <td>
                      <a href={deviceHref(s.deviceId)}>{s.deviceId}</a>
                    </td>
                    <td>{relative(s.lastSeenAt, o.at)}</td>
                    <td>{s.state}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section>
          <h2>Waiting for approval</h2>
          <PendingTable session={session} items={o.pending} back={BASE} />
          {o.pending.length > 0 ? (
            <p>
              <a href={`${BASE}/enrollments`}>All requests</a>
            </p>
          ) : null}
        </section>
      </div>

      <h2>Latest fleet audit</h2>
      <div class="card" data-testid="audit">
        {audit ? (
          <>
            <p>
              {when(audit.at)} ({relative(audit.at, o.at)}) by <code>{audit.actor}</code>:{" "}
              {plural(
                Object.values(audit.counts).reduce((a, b) => a + b, 0),
                "finding",
              )}
              {audit.truncated.length ? ` (truncated: ${audit.truncated.join(", ")})` : ""}.
            </p>
            <p>
              {Object.entries(audit.counts)
                .filter(([, n]) => n > 0)
                .map(([check, n]) => (
                  <span class="badge medium">
                    {check}: {n}
                  </span>
                ))}
            </p>
            {audit.findings.length ? (
              <table>
                <Head cols={["Severity", "Check", "Device", "Finding"]} />
                <tbody>
                  {audit.findings.slice(0, 25).map((f) => (
                    <tr>
                      <td>
                        <Badge value={f.severity} />
                      </td>
                      <td>{f.check}</td>
                      <td>
                        <a href={deviceHref(f.deviceId)}>{f.deviceId}</a>
                      </td>
                      <td>{f.message}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : null}
          </>
        ) : (
          <p class="muted">No fleet audit has run yet.</p>
        )}
        <form method="post" action={`${BASE}/audit/run`}>
          <Csrf session={session} />
          <button type="submit" class="secondary">
            Run the fleet audit now
          </button>
        </form>
      </div>
    </Layout>
  );
};
