/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession } from "../../../authority/sessions.ts";
import type { PendingEnrollment, StoredAuditEvent } from "../../../ports/storage.ts";
import { auditView, type deviceView, enrollmentView, type expiringView } from "../../http/views.ts";
import { when } from "../format.ts";
import { BASE, Badge, Csrf, canAct, deviceHref, Layout } from "../layout.tsx";

/** Parts the dashboard pages share: sign-in and error pages, table headers, the approvals table, audit records. */

export type Device = ReturnType<typeof deviceView>;
export type Expiring = ReturnType<typeof expiringView>;

export type Column = string | { label: string; num: true } | false | undefined;

/** A table's header row; a false or undefined column is left out (one only some roles see). */
export const Head: FC<{ cols: Column[] }> = ({ cols }) => (
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

export const PendingTable: FC<{ session: DashboardSession; items: PendingEnrollment[]; back: string }> = ({
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

/** The link to the next page of a keyset-paginated list, when there is one. */
export const NextPage: FC<{
  path: string;
  params: Record<string, string | undefined>;
  cursor?: string | null;
  label?: string;
}> = ({ path, params, cursor, label = "Next page" }) =>
  cursor ? (
    <p class="pager">
      <a href={`${BASE}/${path}${query({ ...params, cursor })}`}>{label}</a>
    </p>
  ) : null;

/** One POST button (with the CSRF field) that acts on a row, e.g. revoke. */
export const RowAction: FC<{ session: DashboardSession; action: string; label: string }> = ({
  session,
  action,
  label,
}) => (
  <form method="post" action={action} class="inline">
    <Csrf session={session} />
    <button type="submit" class="danger">
      {label}
    </button>
  </form>
);

export const query = (params: Record<string, string | undefined>) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
};

/** A record's detail as compact JSON, cut at 300 characters. */
export const JsonDetail: FC<{ value: unknown }> = ({ value }) =>
  value ? <code>{JSON.stringify(value).slice(0, 300)}</code> : null;

/** Audit records, newest first; `full` adds the record number, the device and the client address. */
export const AuditTable: FC<{ items: StoredAuditEvent[]; testId: string; full?: boolean }> = ({
  items,
  testId,
  full,
}) => (
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
