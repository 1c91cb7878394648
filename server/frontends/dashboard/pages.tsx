/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { ChainReport } from "../../authority/audit-chain.ts";
import type { DashboardSession, FleetOverview } from "../../authority/dashboard.ts";
import type { DeviceDetail } from "../../authority/fleet.ts";
import { REVOCATION_REASONS } from "../../authority/revoke.ts";
import type { OperatorRecord, PendingEnrollment, StoredAuditEvent, TokenRecord } from "../../ports/storage.ts";
import {
  auditView,
  certificateView,
  deviceView,
  enrollmentView,
  type expiringView,
  reportedStatusView,
  tokenView,
} from "../http/views.ts";
import { ExpiryChart } from "./chart.tsx";
import { plural, relative, span, when } from "./format.ts";
import { BASE, Badge, Csrf, canAct, deviceHref, Layout } from "./layout.tsx";

type Device = ReturnType<typeof deviceView>;
type Expiring = ReturnType<typeof expiringView>;

type Column = string | { label: string; num: true } | false | undefined;

/** A table's header row; a false or undefined column is left out (one only some roles see). */
const Head: FC<{ cols: Column[] }> = ({ cols }) => (
  <thead>
    <tr>
      {cols.map((c) =>
        c === false || c === undefined ? null : typeof c === "string" ? (
          c ? (
            <th>{c}</th>
          ) : (
            <th />
          )
        ) : (
          <th class="num">{c.label}</th>
        ),
      )}
    </tr>
  </thead>
);

export const LoginPage: FC<{ error?: string | undefined; notice?: string | undefined; next?: string }> = ({
  error,
  notice,
  next,
}) => (
  <Layout title="Sign in" notice={notice}>
    <div class="card login">
      <h1>Sign in</h1>
      <p class="muted">Sign in with an operator token (edo_…) from `edgeid init` or `edgeid operator create`.</p>
      {error ? (
        <div class="notice error" role="alert">
          {error}
        </div>
      ) : null}
      <form method="post" action={`${BASE}/login`}>
        {next ? <input type="hidden" name="next" value={next} /> : null}
        <div class="field">
          <label for="token">Operator token</label>
          <input type="password" id="token" name="token" autocomplete="off" required size={48} />
        </div>
        <button type="submit">Sign in</button>
      </form>
    </div>
  </Layout>
);

export const ErrorPage: FC<{
  session?: DashboardSession | undefined;
  status: number;
  code: string;
  message: string;
}> = ({ session, status, code, message }) => (
  <Layout title={`Error ${status}`} session={session}>
    <h1>{status === 403 ? "Not allowed" : status === 404 ? "Not found" : "The request was refused"}</h1>
    <div class="notice error" role="alert" data-testid="error">
      {message} <code>({code})</code>
    </div>
    <p>
      <a href={BASE}>Back to the overview</a>
    </p>
  </Layout>
);

const PendingTable: FC<{ session: DashboardSession; items: PendingEnrollment[]; back: string }> = ({
  session,
  items,
  back,
}) => {
  if (items.length === 0) return <p class="muted">No enrollment is waiting for approval.</p>;
  const act = canAct(session);
  return (
    <table data-testid="pending">
      <Head cols={["Device", "Profile", "Method", "Key", "From", "Asked", "Status", act && "Decision"]} />
      <tbody>
        {items.map((p) => {
          const v = enrollmentView(p);
          return (
            <tr>
              <td>
                <a href={deviceHref(v.deviceId)}>{v.deviceId}</a>
              </td>
              <td>{v.profile}</td>
              <td>{v.method}</td>
              <td>
                {v.keyType} <code title={v.keyFingerprint}>{v.keyFingerprint.slice(0, 16)}…</code>
              </td>
              <td>{v.remote ?? "—"}</td>
              <td>{when(v.createdAt)}</td>
              <td>
                <Badge value={v.status} />
              </td>
              {act ? (
                <td>
                  {v.status === "pending" ? (
                    <form method="post" action={`${BASE}/enrollments/${encodeURIComponent(v.id)}/decide`}>
                      <Csrf session={session} />
                      <input type="hidden" name="back" value={back} />
                      <input type="text" name="reason" placeholder="reason (optional)" maxlength={500} size={18} />{" "}
                      <button type="submit" name="decision" value="approve">
                        Approve
                      </button>{" "}
                      <button type="submit" name="decision" value="reject" class="danger">
                        Reject
                      </button>
                    </form>
                  ) : (
                    <span class="muted">{v.decidedBy ?? ""}</span>
                  )}
                </td>
              ) : null}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
};

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

export interface DeviceFilters {
  q?: string | undefined;
  status?: string | undefined;
  profile?: string | undefined;
  expiring?: string | undefined;
}

const query = (params: Record<string, string | undefined>) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
};

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
        <Head cols={["Device", "State", "Profile", "Current certificate", "Expires", "Last enrolled"]} />
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

/** A record's detail as compact JSON, cut at 300 characters. */
const JsonDetail: FC<{ value: unknown }> = ({ value }) =>
  value ? <code>{JSON.stringify(value).slice(0, 300)}</code> : null;

/** Audit records, newest first; `full` adds the record number, the device and the client address. */
const AuditTable: FC<{ items: StoredAuditEvent[]; testId: string; full?: boolean }> = ({ items, testId, full }) => (
  <table data-testid={testId}>
    <Head
      cols={[
        full && { label: "#", num: true },
        "At",
        "Actor",
        "Action",
        "Outcome",
        full && "Device",
        full && "From",
        "Detail",
      ]}
    />
    <tbody>
      {items.map((a) => {
        const v = auditView(a);
        return (
          <tr>
            {full ? <td class="num">{v.id}</td> : null}
            <td>{when(v.at)}</td>
            <td>
              <code>{v.actor}</code>
            </td>
            <td>{v.action}</td>
            <td>
              <Badge value={v.outcome} />
            </td>
            {full ? <td>{v.deviceId ? <a href={deviceHref(v.deviceId)}>{v.deviceId}</a> : ""}</td> : null}
            {full ? <td>{v.remote ?? ""}</td> : null}
            <td>
              <JsonDetail value={v.detail} />
            </td>
          </tr>
        );
      })}
    </tbody>
  </table>
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

export const EnrollmentsPage: FC<{
  session: DashboardSession;
  status: string;
  items: PendingEnrollment[];
  nextCursor: string | null;
  notice?: string | undefined;
}> = ({ session, status, items, nextCursor, notice }) => (
  <Layout title="Approvals" session={session} nav="enrollments" notice={notice}>
    <h1>Enrollment requests</h1>
    <p>
      {["pending", "approved", "rejected", "issued"].map((s) => (
        <>{s === status ? <strong>{s}</strong> : <a href={`${BASE}/enrollments?status=${s}`}>{s}</a>} </>
      ))}
    </p>
    <PendingTable session={session} items={items} back={`${BASE}/enrollments`} />
    {nextCursor ? (
      <p class="pager">
        <a href={`${BASE}/enrollments${query({ status, cursor: nextCursor })}`}>Next page</a>
      </p>
    ) : null}
  </Layout>
);

export interface CreatedTokenRow {
  deviceId: string;
  profile: string;
  tokenId: string;
  token: string;
  expiresAt: Date;
}

export const TokensPage: FC<{
  session: DashboardSession;
  profiles: string[];
  items: TokenRecord[];
  state: string | undefined;
  deviceId: string | undefined;
  nextCursor: string | null;
  now: Date;
  created?: CreatedTokenRow[] | undefined;
  notice?: string | undefined;
}> = ({ session, profiles, items, state, deviceId, nextCursor, now, created, notice }) => {
  const act = canAct(session);
  const profileSelect = (id: string) => (
    <select id={id} name="profile">
      {profiles.map((p) => (
        <option value={p} selected={p === "device"}>
          {p}
        </option>
      ))}
    </select>
  );
  return (
    <Layout title="Tokens" session={session} nav="tokens" notice={notice}>
      <h1>Bootstrap tokens</h1>
      {created ? (
        <div class="notice warn" data-testid="created-tokens">
          <p>
            <strong>Copy {created.length === 1 ? "this token" : "these tokens"} now:</strong> the secret is shown once
            and stored only as a hash.
          </p>
          <table>
            <Head cols={["Device", "Profile", "Token", "Expires"]} />
            <tbody>
              {created.map((t) => (
                <tr>
                  <td>{t.deviceId}</td>
                  <td>{t.profile}</td>
                  <td>
                    <span class="secret">{t.token}</span>
                  </td>
                  <td>{when(t.expiresAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {act ? (
        <div class="grid2">
          <form method="post" action={`${BASE}/tokens`} class="card" data-testid="token-single">
            <h2>One device</h2>
            <Csrf session={session} />
            <input type="hidden" name="mode" value="single" />
            <div class="field">
              <label for="single-device">Device id</label>
              <input type="text" id="single-device" name="deviceId" required maxlength={64} />
            </div>
            <div class="field">
              <label for="single-profile">Profile</label>
              {profileSelect("single-profile")}
            </div>
            <div class="field">
              <label for="single-ttl">Valid for</label>
              <input type="text" id="single-ttl" name="ttl" value="7d" size={6} maxlength={16} />
            </div>
            <div class="field">
              <label for="single-dns">DNS names for its certificates (comma-separated, optional)</label>
              <input type="text" id="single-dns" name="dns" maxlength={2000} size={40} />
            </div>
            <div class="field">
              <label for="single-ip">IP addresses (comma-separated, optional)</label>
              <input type="text" id="single-ip" name="ip" maxlength={2000} size={40} />
            </div>
            <button type="submit">Create token</button>
          </form>
          <form method="post" action={`${BASE}/tokens`} class="card" data-testid="token-bulk">
            <h2>Many devices</h2>
            <Csrf session={session} />
            <input type="hidden" name="mode" value="bulk" />
            <div class="field">
              <label for="bulk-ids">Device ids, one per line…</label>
              <textarea id="bulk-ids" name="deviceIds" maxlength={700000} />
            </div>
            <div class="field">
              <label for="bulk-prefix">…or a numbered series: prefix, first number, count</label>
              <input type="text" id="bulk-prefix" name="prefix" maxlength={48} size={14} placeholder="gw-" />{" "}
              <input type="number" name="start" value="1" min="0" aria-label="first number" />{" "}
              <input type="number" name="count" min="1" max="10000" aria-label="count" />
            </div>
            <div class="field">
              <label for="bulk-profile">Profile</label>
              {profileSelect("bulk-profile")}
            </div>
            <div class="field">
              <label for="bulk-ttl">Valid for</label>
              <input type="text" id="bulk-ttl" name="ttl" value="30d" size={6} maxlength={16} />
            </div>
            <button type="submit" name="format" value="csv">
              Create and download CSV
            </button>{" "}
            <button type="submit" name="format" value="html" class="secondary">
              Create and show
            </button>
          </form>
        </div>
      ) : null}
      <h2>Tokens</h2>
      <form method="get" action={`${BASE}/tokens`} class="filters">
        <div>
          <label for="filter-device">Device id</label>
          <input type="text" id="filter-device" name="deviceId" value={deviceId ?? ""} maxlength={129} />
        </div>
        <div>
          <label for="filter-state">State</label>
          <select id="filter-state" name="state">
            <option value="">any</option>
            {["unused", "used", "revoked", "expired"].map((s) => (
              <option value={s} selected={state === s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Filter</button>
      </form>
      <table data-testid="tokens">
        <Head cols={["Token id", "Device", "Profile", "State", "Created", "Expires", "Certificate", act && ""]} />
        <tbody>
          {items.map((t) => {
            const v = tokenView(t, now);
            return (
              <tr data-token={v.id}>
                <td>
                  <code>{v.id}</code>
                </td>
                <td>
                  <a href={deviceHref(v.deviceId)}>{v.deviceId}</a>
                </td>
                <td>{v.profile}</td>
                <td>
                  <Badge value={v.state} />
                </td>
                <td>
                  {when(v.createdAt)} <span class="muted">{v.createdBy}</span>
                </td>
                <td>{when(v.expiresAt)}</td>
                <td>{v.usedSerial ? <code>{v.usedSerial}</code> : "—"}</td>
                {act ? (
                  <td>
                    {v.state === "unused" ? (
                      <form method="post" action={`${BASE}/tokens/${encodeURIComponent(v.id)}/revoke`} class="inline">
                        <Csrf session={session} />
                        <button type="submit" class="danger">
                          Revoke
                        </button>
                      </form>
                    ) : null}
                  </td>
                ) : null}
              </tr>
            );
          })}
        </tbody>
      </table>
      {nextCursor ? (
        <p class="pager">
          <a href={`${BASE}/tokens${query({ state, deviceId, cursor: nextCursor })}`}>Next page</a>
        </p>
      ) : null}
    </Layout>
  );
};

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
    {nextCursor ? (
      <p class="pager">
        <a href={`${BASE}/legacy${query({ profile, within, cursor: nextCursor })}`}>Next page</a>
      </p>
    ) : null}
  </Layout>
);

export interface AuditFilters {
  actor?: string | undefined;
  action?: string | undefined;
  deviceId?: string | undefined;
}

export const AuditPage: FC<{
  session: DashboardSession;
  filters: AuditFilters;
  items: StoredAuditEvent[];
  nextCursor: string | null;
  chain?: ChainReport | undefined;
}> = ({ session, filters, items, nextCursor, chain }) => (
  <Layout title="Audit trail" session={session} nav="audit">
    <h1>Audit trail</h1>
    <p class="muted">
      Every issuance, change and refusal, newest first. Each record carries the hash of the one before it; verifying the
      chain proves that none was edited or removed.
    </p>
    {chain ? (
      <div class={`notice ${chain.ok ? "" : "error"}`} data-testid="chain">
        {chain.ok
          ? `The chain is intact: ${plural(chain.records, "record")} verified, up to record ${chain.lastId ?? "—"}.`
          : `The chain is broken at record ${chain.broken?.id}: ${chain.broken?.problem}.`}
      </div>
    ) : null}
    <form method="get" action={`${BASE}/audit`} class="filters">
      <div>
        <label for="audit-actor">Actor</label>
        <input type="text" id="audit-actor" name="actor" value={filters.actor ?? ""} maxlength={128} />
      </div>
      <div>
        <label for="audit-action">Action</label>
        <input type="text" id="audit-action" name="action" value={filters.action ?? ""} maxlength={64} />
      </div>
      <div>
        <label for="audit-device">Device</label>
        <input type="text" id="audit-device" name="deviceId" value={filters.deviceId ?? ""} maxlength={129} />
      </div>
      <button type="submit">Filter</button>
      <a href={`${BASE}/audit?verify=1`}>Verify the chain</a>
    </form>
    <AuditTable items={items} testId="audit-log" full />
    {nextCursor ? (
      <p class="pager">
        <a href={`${BASE}/audit${query({ ...filters, cursor: nextCursor })}`}>Older records</a>
      </p>
    ) : null}
  </Layout>
);

export const OperatorsPage: FC<{
  session: DashboardSession;
  items: OperatorRecord[];
  now: Date;
  created?: { name: string; role: string; token: string } | undefined;
  notice?: string | undefined;
}> = ({ session, items, now, created, notice }) => (
  <Layout title="Operators" session={session} nav="operators" notice={notice}>
    <h1>Operators</h1>
    {created ? (
      <div class="notice warn" data-testid="created-operator">
        <p>
          <strong>Copy the token of {created.name} now</strong> ({created.role}): it is shown once and stored only as a
          hash.
        </p>
        <p>
          <span class="secret">{created.token}</span>
        </p>
      </div>
    ) : null}
    <form method="post" action={`${BASE}/operators`} class="filters card">
      <Csrf session={session} />
      <div>
        <label for="op-name">Name</label>
        <input type="text" id="op-name" name="name" required maxlength={64} />
      </div>
      <div>
        <label for="op-role">Role</label>
        <select id="op-role" name="role">
          {["auditor", "operator", "admin"].map((r) => (
            <option value={r}>{r}</option>
          ))}
        </select>
      </div>
      <div>
        <label for="op-ttl">Valid for (empty: until revoked)</label>
        <input type="text" id="op-ttl" name="ttl" size={8} maxlength={16} placeholder="90d" />
      </div>
      <button type="submit">Create operator</button>
    </form>
    <table data-testid="operators">
      <Head cols={["Name", "Role", "State", "Created", "Expires", ""]} />
      <tbody>
        {items.map((o) => {
          const state = o.revokedAt
            ? "revoked"
            : o.expiresAt && o.expiresAt.getTime() <= now.getTime()
              ? "expired"
              : "active";
          return (
            <tr data-operator={o.id}>
              <td>
                {o.name} <code class="muted">{o.id}</code>
              </td>
              <td>{o.role}</td>
              <td>
                <Badge value={state} />
              </td>
              <td>
                {when(o.createdAt)} <span class="muted">{o.createdBy ?? ""}</span>
              </td>
              <td>{when(o.expiresAt)}</td>
              <td>
                {state === "active" && `operator:${o.id}` !== session.actor.id ? (
                  <form method="post" action={`${BASE}/operators/${encodeURIComponent(o.id)}/revoke`} class="inline">
                    <Csrf session={session} />
                    <button type="submit" class="danger">
                      Revoke
                    </button>
                  </form>
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  </Layout>
);
