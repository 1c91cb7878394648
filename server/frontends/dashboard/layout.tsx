/** @jsxImportSource hono/jsx */
import type { Child, FC } from "hono/jsx";
import { hasRole } from "../../authority/actor.ts";
import type { DashboardSession } from "../../authority/sessions.ts";

export const BASE = "/dashboard";

/** Where a device's page is. */
export const deviceHref = (id: string) => `${BASE}/devices/${encodeURIComponent(id)}`;

/** Messages a redirect may name (?notice=…); anything else is not shown, so nothing is reflected. */
export const NOTICES: Record<string, { text: string; kind?: "error" | "warn" }> = {
  revoked: { text: "The device is revoked: its certificates are on the CRL and OCSP answers revoked." },
  decommissioned: { text: "The device is decommissioned: its certificates are revoked." },
  reinstated: { text: "The device is pending again; it needs a new bootstrap token to enroll." },
  "rotate-queued": { text: "A rotate command is queued; the device renews with a new key when it receives it." },
  approved: { text: "The enrollment is approved; the device gets its certificate at its next retry." },
  rejected: { text: "The enrollment is rejected; the device's next retry is refused." },
  "token-revoked": { text: "The token is revoked." },
  "workload-registered": { text: "The entry is registered; the devices it applies to are told at once." },
  "workload-deleted": { text: "The entry is deleted and its SVIDs are revoked." },
  "metadata-saved": { text: "Owner and location are saved." },
  "operator-revoked": { text: "The operator is revoked; its sessions have ended." },
  "audit-done": { text: "The fleet audit ran; its findings are below." },
  "signed-out": { text: "You are signed out." },
  "session-ended": { text: "Your session ended; sign in again.", kind: "warn" },
};

export const Notice: FC<{ code?: string | undefined }> = ({ code }) => {
  const n = code ? NOTICES[code] : undefined;
  if (!n) return null;
  return (
    <div class={`notice ${n.kind ?? ""}`} role="status">
      {n.text}
    </div>
  );
};

export const Csrf: FC<{ session: DashboardSession }> = ({ session }) => (
  <input type="hidden" name="_csrf" value={session.csrfToken} />
);

export const Badge: FC<{ value: string }> = ({ value }) => <span class={`badge ${value}`}>{value}</span>;

const NAV: [string, string][] = [
  ["overview", "Overview"],
  ["devices", "Devices"],
  ["enrollments", "Approvals"],
  ["tokens", "Tokens"],
  ["workloads", "Workloads"],
  ["legacy", "Legacy certificates"],
  ["audit", "Audit caller"],
];

export const Layout: FC<{
  title: string;
  session?: DashboardSession | undefined;
  nav?: string;
  notice?: string | undefined;
  /** Reload the page every so many seconds (a device waiting for approval). */
  refresh?: number | undefined;
  children?: Child;
}> = ({ title, session, nav, notice, refresh, children }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      {refresh ? <meta http-equiv="refresh" content={String(refresh)} /> : null}
      <title>{`${title} · edgeid`}</title>
      <link rel="stylesheet" href={`${BASE}/static/app.css`} />
    </head>
    <body>
      <header class="top">
        <span class="brand">edgeid</span>
        {session ? (
          <nav>
            {[...NAV, ...(hasRole(session.actor, "admin") ? [["operators", "Operators"] as [string, string]] : [])].map(
              ([key, label]) => (
                <a href={key === "overview" ? BASE : `${BASE}/${key}`} class={nav === key ? "current" : ""}>
                  {label}
                </a>
              ),
            )}
          </nav>
        ) : null}
        {session ? (
          <div class="who">
            <span data-testid="whoami">
              {session.operatorName} ({session.actor.role})
            </span>
            <form method="post" action={`${BASE}/logout`} class="inline">
              <Csrf session={session} />
              <button type="submit" class="secondary">
                Sign out
              </button>
            </form>
          </div>
        ) : null}
      </header>
      <main>
        <Notice code={notice} />
        {children}
      </main>
    </body>
  </html>
);

/** Whether this session may take operator actions (revoke, approve, tokens). */
export const canAct = (session: DashboardSession) => hasRole(session.actor, "operator");
