/** @jsxImportSource hono/jsx */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Authority } from "../../authority/authority.ts";
import { AuthorityError } from "../../authority/errors.ts";
import type { DashboardSession, FleetAggregates } from "../../authority/sessions.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { retryAfterHeader, STATUS } from "../http/errors.ts";
import type { FleetApi } from "../http/fleet-api.ts";
import { BASE } from "./layout.tsx";
import { ErrorPage } from "./pages/common.tsx";
import { auditRoutes } from "./routes/audit.tsx";
import { type DashboardContext, type Env, type PageStatus, page } from "./routes/context.ts";
import { deviceRoutes } from "./routes/devices.tsx";
import { enrollmentRoutes } from "./routes/enrollments.tsx";
import { legacyRoutes } from "./routes/legacy.tsx";
import { operatorRoutes } from "./routes/operators.tsx";
import { overviewRoutes } from "./routes/overview.tsx";
import { sessionRoutes } from "./routes/session.tsx";
import { tokenRoutes } from "./routes/tokens.tsx";
import { workloadRoutes } from "./routes/workloads.tsx";
import { STYLESHEET } from "./style.ts";

export interface DashboardDeps {
  authority: Authority;
  peer: (c: Context) => PeerInfo;
  maxBodyBytes: number;
  fleet?: FleetApi;
}

/**
 * Every dashboard response: no script at all, styles only from our stylesheet, forms
 * only to ourselves, never framed, never cached, no referrer to other sites.
 */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // Not "no-referrer": with it Chromium sends "Origin: null" on our own forms.
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};

/** The audit action of a form, known before its route runs (a refused CSRF token is audited under it). */
function postAction(path: string): string {
  const p = path.slice(BASE.length);
  if (p === "/login" || p === "/logout") return `dashboard${p.replace("/", ".")}`;
  if (p === "/audit/run") return "fleet.audit";
  if (p === "/tokens") return "token.create";
  if (p === "/operators") return "operator.create";
  if (p === "/workloads") return "workload.register";
  if (/^\/workloads\/[^/]+\/delete$/.test(p)) return "workload.delete";
  let m = /^\/devices\/[^/]+\/(revoke|reinstate|rotate|metadata)$/.exec(p);
  if (m) return m[1] === "rotate" ? "command.create" : `device.${m[1]}`;
  m = /^\/(tokens|enrollments|operators)\/[^/]+\/(revoke|decide)$/.exec(p);
  if (m) return m[1] === "tokens" ? "token.revoke" : m[1] === "operators" ? "operator.revoke" : "enrollment.decide";
  return "dashboard.request";
}

/** The device a dashboard path is about, for the audit record of a refusal. */
function deviceOfPath(path: string): string | null {
  const m = /^\/dashboard\/devices\/([^/]+)/.exec(path);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1] as string).slice(0, 160);
  } catch {
    return null;
  }
}

/**
 * The operator dashboard at /dashboard: pages rendered on the server from the same
 * authority verbs as the operator API (which check the role), behind a session that an
 * operator token opens. No JavaScript; every state-changing form carries the session's
 * CSRF token and must come from this origin.
 */
export function dashboardRoutes(deps: DashboardDeps): Hono<Env> {
  const { authority } = deps;
  const app = new Hono<Env>().basePath(BASE);
  const remote = (c: Context<Env>) => deps.peer(c).remoteAddress;
  /** The overview's whole-table counts, dropped after any change made here. */
  const aggregates = new Map<number, FleetAggregates>();

  /** A refusal: audited under the route's action, answered with a page that says why. */
  const deny = async (c: Context<Env>, e: AuthorityError) => {
    c.set("refusal", e.reason);
    const session = c.get("session") as DashboardSession | undefined;
    await authority.audit.refusal(
      {
        action: c.get("action") ?? "dashboard.request",
        actor: session?.actor.id ?? "anonymous",
        remote: remote(c),
        deviceId: deviceOfPath(c.req.path),
      },
      e,
    );
    const status = STATUS[e.code] as PageStatus;
    for (const [k, v] of Object.entries(retryAfterHeader(e))) c.header(k, v);
    return page(c, <ErrorPage session={session} status={status} code={e.reason} message={e.publicMessage} />, status);
  };

  app.use("*", async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
  });

  app.onError((err, c) => {
    const ctx = c as Context<Env>;
    if (err instanceof AuthorityError && err.code !== "internal") return deny(ctx, err);
    throw err instanceof AuthorityError ? (err.cause ?? err) : err;
  });

  app.get("/static/app.css", (c) => {
    const res = c.body(STYLESHEET, 200, { "content-type": "text/css; charset=utf-8" });
    return res;
  });

  /**
   * A browser's POST must come from this origin (login CSRF included): Sec-Fetch-Site,
   * which page content cannot set, decides where a browser sends it; otherwise Origin.
   * Clients that send neither are not browsers, and the CSRF token decides.
   */
  const checkOrigin = (c: Context<Env>) => {
    const site = c.req.header("sec-fetch-site");
    const origin = c.req.header("origin");
    let ok = true;
    if (site !== undefined) ok = site === "same-origin";
    else if (origin !== undefined) {
      try {
        ok = origin !== "null" && new URL(origin).host === (c.req.header("host") ?? new URL(c.req.url).host);
      } catch {
        ok = false;
      }
    }
    if (!ok) throw new AuthorityError("forbidden", "the form was not sent from this dashboard", "cross_origin_post");
  };

  // Forms: URL-encoded, bounded, from this origin.
  app.use("*", async (c, next) => {
    if (c.req.method !== "POST") return next();
    c.set("action", postAction(c.req.path));
    checkOrigin(c);
    const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== "application/x-www-form-urlencoded") {
      throw new AuthorityError(
        "unsupported_media_type",
        "forms are sent as application/x-www-form-urlencoded",
        "wrong_content_type",
      );
    }
    return next();
  });
  app.use(
    "*",
    bodyLimit({
      maxSize: deps.maxBodyBytes,
      onError: (c) =>
        deny(
          c as Context<Env>,
          new AuthorityError("payload_too_large", `the form exceeds ${deps.maxBodyBytes} bytes`, "payload_too_large"),
        ),
    }),
  );

  const context: DashboardContext = {
    app,
    authority,
    fleet: deps.fleet,
    profiles: [...authority.profiles.keys()],
    aggregates,
    remote,
  };
  // Sign-in, and the session every other page needs.
  sessionRoutes(context, deny);
  for (const routes of [
    overviewRoutes,
    deviceRoutes,
    enrollmentRoutes,
    tokenRoutes,
    workloadRoutes,
    legacyRoutes,
    operatorRoutes,
    auditRoutes,
  ]) {
    routes(context);
  }

  app.all("*", (c) => {
    c.set("action", "dashboard.request");
    throw new AuthorityError("not_found", "no such dashboard page", "unknown_page");
  });
  return app;
}
