/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DeviceDetail } from "../../../authority/inventory.ts";
import { REVOCATION_REASONS } from "../../../authority/revoke.ts";
import type { DashboardSession } from "../../../authority/sessions.ts";
import type { PendingEnrollment } from "../../../ports/storage.ts";
import { certificateView, deviceView, reportedStatusView, workloadSvidView } from "../../http/views.ts";
import { plural, relative, when } from "../format.ts";
import { BASE, Badge, Csrf, canAct, deviceHref, Layout } from "../layout.tsx";
import { AuditTable, type Device, Head, JsonDetail, PendingTable, query } from "./common.tsx";

/** The device list, one device, and the revocation confirmation. */

export interface DeviceFilters {
  q?: string | undefined;
  status?: string | undefined;
  profile?: string | undefined;
  expiring?: string | undefined;
}

export const EXPIRING_CHOICES = ["0s", "1d", "7d", "30d", "90d"];

export const DeviceListPage: FC<{
  session: DashboardSession;
  filters: DeviceFilters;
  profiles: string[];
  items: Device[];
  nextCursor: string | null;
  paged: boolean;
  now: Date;
}> = ({ session, filters, profiles, items, nextCursor, paged, now }) => (
  <Layout title="Devices" session={session} nav="devices">
    <h1>Devices</h1>
    <form method="get" action={`${BASE}/devices`} class="filters">
      <div>
        <label for="q">Device id starts with</label>
        <input type="text" id="q" name="q" value={filters.q ?? ""} maxlength={128} />
      </div>
      <div>
        <label for="status">State</label>
        <select id="status" name="status">
          <option value="">any</option>
          {["pending", "active", "revoked", "decommissioned"].map((s) => (
            <option value={s} selected={filters.status === s}>
              {s}
            </option>
          ))}
        </select>
      </div>
      <div>
        <label for="profile">Profile</label>
        <select id="profile" name="profile">
          <option value="">any</option>
          {profiles.map((p) => (
            <option value={p} selected={filters.profile === p}>
              {p}
            </option>
          ))}
        </select>
      </div>
      <div>
        <label for="expiring">Expiring within</label>
        <select id="expiring" name="expiring">
          <option value="">—</option>
          {EXPIRING_CHOICES.map((e) => (
            <option value={e} selected={filters.expiring === e}>
              {e === "0s" ? "already expired" : e}
            </option>
          ))}
        </select>
      </div>
      <button type="submit">Search</button>
    </form>
    {items.length === 0 ? (
      <p class="muted" data-testid="no-devices">
        No device matches.
      </p>
    ) : (
      <table data-testid="devices">
        <Head cols={["Device", "State", "Profile", "Current certificate", "Expires", "Last enrolled", "Protocol"]} />
        <tbody>
          {items.map((d) => (
            <tr data-device={d.id}>
              <td>
                <a href={deviceHref(d.id)}>{d.id}</a>
              </td>
              <td>
                <Badge value={d.status} />
              </td>
              <td>{d.profile}</td>
              <td>
                <code>{d.currentSerial ?? "—"}</code>
              </td>
              <td>
                {when(d.currentNotAfter)} <span class="muted">{relative(d.currentNotAfter, now)}</span>
              </td>
              <td>{when(d.lastEnrolledAt)}</td>
              <td>{d.protocol ? d.protocol.toUpperCase() : "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
    <div class="pager">
      {paged ? <a href={`${BASE}/devices${query({ ...filters })}`}>First page</a> : null}
      {nextCursor ? (
        <a href={`${BASE}/devices${query({ ...filters, cursor: nextCursor })}`} rel="next">
          Next page
        </a>
      ) : null}
    </div>
  </Layout>
);

const Facts: FC<{ rows: [string, unknown][] }> = ({ rows }) => (
  <dl class="facts">
    {rows.map(([k, v]) => (
      <>
        <dt>{k}</dt>
        <dd>{v === null || v === undefined || v === "" ? "—" : (v as string)}</dd>
      </>
    ))}
  </dl>
);

export const DevicePage: FC<{
  session: DashboardSession;
  detail: DeviceDetail;
  pending: PendingEnrollment[];
  trustDomain: string;
  isGateway: boolean;
  now: Date;
  notice?: string | undefined;
}> = ({ session, detail, pending, trustDomain, isGateway, now, notice }) => {
  const d = deviceView(detail.device, trustDomain);
  const reported = detail.reported ? reportedStatusView(detail.reported) : null;
  const open = detail.mqttSessions.find((s) => !s.disconnectedAt);
  const act = canAct(session);
  const waiting = pending.some((p) => p.status === "pending" || p.status === "approved") || d.status === "pending";
  const path = deviceHref(d.id);
  return (
    <Layout
      title={d.id}
      session={session}
      nav="devices"
      notice={notice}
      // A device waiting for approval or enrollment: the page follows it until it is done.
      refresh={waiting ? 3 : undefined}
    >
      <h1>
        {d.id} <Badge value={d.status} />
      </h1>
      <div class="grid2">
        <section class="card">
          <h2>Identity</h2>
          <Facts
            rows={[
              ["Identity", <code>{d.identity}</code>],
              ["Profile", d.profile],
              ["State", <span data-testid="device-status">{d.status}</span>],
              ["Current certificate", d.currentSerial ? <code>{d.currentSerial}</code> : null],
              [
                "Expires",
                d.currentNotAfter ? `${when(d.currentNotAfter)} (${relative(d.currentNotAfter, now)})` : null,
              ],
              ["Enrolled with", d.protocol ? d.protocol.toUpperCase() : null],
              ["Owner", detail.metadata?.owner],
              ["Location", detail.metadata?.location],
              ["DNS names", d.names?.dns.join(", ")],
              ["IP addresses", d.names?.ip.join(", ")],
              ["Gateway", d.broker ? <a href={deviceHref(d.broker.gateway)}>{d.broker.gateway}</a> : null],
              ["Manufacturer certificate", detail.idevid ? detail.idevid.subject : null],
              ["Created", when(d.createdAt)],
            ]}
          />
        </section>
        <section class="card" data-testid="live-status">
          <h2>Live status (MQTT)</h2>
          {reported ? (
            <Facts
              rows={[
                ["Reported state", reported.state],
                [
                  "Last seen",
                  reported.lastSeenAt
                    ? `${when(reported.lastSeenAt)} (${relative(reported.lastSeenAt, now)})`
                    : "never",
                ],
                ["Connected", open ? `since ${when(open.connectedAt)} from ${open.remote ?? "?"}` : "no"],
                ["Agent version", reported.agentVersion],
                ["Key", reported.keyAlg],
                ["Certificate it uses", reported.certSerial ? <code>{reported.certSerial}</code> : null],
                [
                  "Next renewal",
                  reported.nextRenewAt
                    ? `${when(reported.nextRenewAt)} (${relative(reported.nextRenewAt, now)})`
                    : null,
                ],
                [
                  "Last renewal",
                  reported.lastRenew
                    ? `${when(reported.lastRenew.at)}: ${reported.lastRenew.ok ? "ok" : `failed (${reported.lastRenew.error ?? "?"})`}`
                    : null,
                ],
              ]}
            />
          ) : (
            <p class="muted">The device has not reported over MQTT.</p>
          )}
        </section>
      </div>

      {pending.length ? (
        <>
          <h2>Enrollment requests</h2>
          <PendingTable session={session} items={pending} back={path} />
        </>
      ) : null}

      {act ? (
        <section class="card" data-testid="actions">
          <h2>Actions</h2>
          {d.status === "active" || d.status === "pending" ? (
            <form method="post" action={`${path}/revoke`} class="filters" data-testid="revoke-form">
              <Csrf session={session} />
              <div>
                <label for="reason">Revocation reason</label>
                <select id="reason" name="reason">
                  {Object.keys(REVOCATION_REASONS).map((r) => (
                    <option value={r} selected={r === "keyCompromise"}>
                      {r}
                    </option>
                  ))}
                </select>
              </div>
              <label class="check">
                <input type="checkbox" name="decommission" value="yes" /> retire (decommission) instead
              </label>
              {isGateway ? (
                <label class="check">
                  <input type="checkbox" name="cascade" value="yes" /> with its appliances
                </label>
              ) : null}
              <button type="submit" class="danger">
                Revoke…
              </button>
            </form>
          ) : null}
          {d.status === "active" ? (
            <form method="post" action={`${path}/rotate`} class="inline">
              <Csrf session={session} />
              <button type="submit" class="secondary">
                Rotate now
              </button>{" "}
              <span class="muted">the device renews with a new key when it receives the command</span>
            </form>
          ) : null}
          <form method="post" action={`${path}/metadata`} class="filters" data-testid="metadata-form">
            <Csrf session={session} />
            <div>
              <label for="owner">Owner</label>
              <input type="text" id="owner" name="owner" value={detail.metadata?.owner ?? ""} maxlength={200} />
            </div>
            <div>
              <label for="location">Location</label>
              <input
                type="text"
                id="location"
                name="location"
                value={detail.metadata?.location ?? ""}
                maxlength={200}
              />
            </div>
            <button type="submit" class="secondary">
              Save owner and location
            </button>
          </form>
          {d.status === "revoked" || d.status === "decommissioned" ? (
            <form method="post" action={`${path}/reinstate`} class="inline">
              <Csrf session={session} />
              <button type="submit" class="secondary">
                Reinstate (back to pending)
              </button>
            </form>
          ) : null}
        </section>
      ) : null}

      <h2>Certificates</h2>
      {detail.certificates.length === 0 ? (
        <p class="muted">None issued.</p>
      ) : (
        <table data-testid="certificates">
          <Head cols={["Serial", "Status", "Valid from", "Valid until", "Key", "How", "Issuer"]} />
          <tbody>
            {detail.certificates.map((c) => {
              const v = certificateView(c);
              const status =
                v.status === "valid" && c.notAfter.getTime() <= now.getTime()
                  ? "expired"
                  : v.status === "valid" && c.serial !== d.currentSerial
                    ? "superseded"
                    : v.status;
              return (
                <tr data-serial={v.serial}>
                  <td>
                    <code>{v.serial}</code>
                  </td>
                  <td>
                    <Badge value={status} />
                    {v.revocationReason ? <span class="muted"> {v.revocationReason}</span> : null}
                  </td>
                  <td>{when(v.notBefore)}</td>
                  <td>{when(v.notAfter)}</td>
                  <td>{v.keyType}</td>
                  <td>{v.method}</td>
                  <td>{v.issuer}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}

      {detail.workloadSvids.length ? (
        <>
          <h2>Workload SVIDs</h2>
          <table data-testid="workload-svids">
            <Head cols={["SPIFFE ID", "Status", "Valid until", "Serial", "Entry"]} />
            <tbody>
              {detail.workloadSvids.map((c) => {
                const v = workloadSvidView(c, now);
                return (
                  <tr data-serial={v.serial}>
                    <td>
                      <code>{v.spiffeId}</code>
                    </td>
                    <td>
                      <Badge value={v.status} />
                    </td>
                    <td>{when(v.notAfter)}</td>
                    <td>
                      <code>{v.serial}</code>
                    </td>
                    <td>
                      <code>{v.entryId}</code>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      ) : null}
      <p>
        <a href={`${BASE}/workloads?device=${encodeURIComponent(d.id)}`} data-testid="device-workloads">
          Workload entries that apply to this device
        </a>
      </p>

      <h2>Recent events</h2>
      {detail.events.length === 0 ? (
        <p class="muted">No events.</p>
      ) : (
        <table>
          <Head cols={["At", "Type", "Detail"]} />
          <tbody>
            {detail.events.map((e) => (
              <tr>
                <td>{when(e.at)}</td>
                <td>{e.type}</td>
                <td>
                  <JsonDetail value={e.body} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      {detail.commands.length ? (
        <>
          <h2>Commands</h2>
          <table>
            <Head cols={["Command", "State", "Queued", "By"]} />
            <tbody>
              {detail.commands.map((c) => (
                <tr>
                  <td>{c.command}</td>
                  <td>
                    <Badge value={c.state} />
                    {c.error ? <span class="muted"> {c.error}</span> : null}
                  </td>
                  <td>{when(c.createdAt)}</td>
                  <td>
                    <code>{c.createdBy}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}

      <h2>Audit records</h2>
      <AuditTable items={detail.audit} testId="device-audit" />
    </Layout>
  );
};

export const ConfirmRevokePage: FC<{
  session: DashboardSession;
  detail: DeviceDetail;
  reason: string;
  decommission: boolean;
  cascade: boolean;
  now: Date;
}> = ({ session, detail, reason, decommission, cascade, now }) => {
  const id = detail.device.id;
  const live = detail.certificates.filter((c) => c.status === "valid" && c.notAfter.getTime() > now.getTime());
  return (
    <Layout title={`Revoke ${id}?`} session={session} nav="devices">
      <h1>
        {decommission ? "Decommission" : "Revoke"} {id}?
      </h1>
      <div class="notice warn" data-testid="confirm">
        <p>
          This revokes {plural(live.length, "unexpired certificate")} of <strong>{id}</strong> with reason{" "}
          <strong>{reason}</strong>
          {cascade ? ", and every appliance this gateway enrolled" : ""}. CRL and OCSP say revoked as soon as this is
          done; unused bootstrap tokens are voided; an open MQTT session is closed. It cannot be undone: a reinstated
          device must enroll again.
        </p>
        <ul>
          {live.map((c) => (
            <li>
              <code>{c.serial}</code> until {when(c.notAfter)}
            </li>
          ))}
        </ul>
      </div>
      <form method="post" action={`${deviceHref(id)}/revoke`} class="inline">
        <Csrf session={session} />
        <input type="hidden" name="reason" value={reason} />
        {decommission ? <input type="hidden" name="decommission" value="yes" /> : null}
        {cascade ? <input type="hidden" name="cascade" value="yes" /> : null}
        <input type="hidden" name="confirm" value="yes" />
        <button type="submit" class="danger">
          Yes, {decommission ? "decommission" : "revoke"} {id}
        </button>
      </form>{" "}
      <a href={deviceHref(id)}>Cancel</a>
    </Layout>
  );
};
