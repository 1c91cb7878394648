/** @jsxImportSource hono/jsx */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { JSX } from "hono/jsx/jsx-runtime";
import { requireRole } from "../../authority/actor.ts";
import { decideEnrollment } from "../../authority/approvals.ts";
import { recordDenial } from "../../authority/audit.ts";
import { verifyAuditChain } from "../../authority/audit-chain.ts";
import type { Authority } from "../../authority/authority.ts";
import { issueCommands } from "../../authority/commands.ts";
import {
  checkCsrfToken,
  closeDashboardSession,
  type DashboardSession,
  type FleetAggregates,
  fleetAggregates,
  fleetOverview,
  openDashboardSession,
  resumeDashboardSession,
} from "../../authority/dashboard.ts";
import { AuthorityError, badRequest } from "../../authority/errors.ts";
import {
  issueTokens,
  listDevices,
  listEnrollments,
  listTokens,
  readAudit,
  revokeToken,
  showDevice,
} from "../../authority/fleet.ts";
import { runFleetAudit } from "../../authority/fleet-audit.ts";
import { expiringReport, setDeviceMetadata } from "../../authority/lifecycle.ts";
import { createOperator, listOperators, revokeOperator } from "../../authority/operators.ts";
import { REVOCATION_REASONS, type RevocationReason, reinstateDevice, revokeDevice } from "../../authority/revoke.ts";
import { batchDeviceIds } from "../../authority/tokens.ts";
import { isDuration, parseDuration } from "../../config/duration.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import type { PendingStatus } from "../../ports/storage.ts";
import { STATUS } from "../http/errors.ts";
import type { FleetApi } from "../http/fleet-api.ts";
import { deviceView, expiringView } from "../http/views.ts";
import { csv } from "./format.ts";
import { BASE, deviceHref } from "./layout.tsx";
import {
  AuditPage,
  ConfirmRevokePage,
  type CreatedTokenRow,
  DeviceListPage,
  DevicePage,
  EnrollmentsPage,
  ErrorPage,
  EXPIRING_CHOICES,
  LegacyPage,
  LoginPage,
  OperatorsPage,
  OverviewPage,
  TokensPage,
} from "./pages.tsx";
import { STYLESHEET } from "./style.ts";

export interface DashboardDeps {
  authority: Authority;
  peer: (c: Context) => PeerInfo;
  maxBodyBytes: number;
  fleet?: FleetApi;
}

type Form = Record<string, string | File | (string | File)[]>;
type Env = {
  Variables: { session: DashboardSession; form: Form; action: string; refusal: string; peer: PeerInfo };
};

/** `__Host-`: the browser keeps it only if Secure, Path=/ and without Domain (RFC 6265bis). */
export const SESSION_COOKIE = "__Host-edgeid_session";

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

const PAGE = 50;
/** How long the overview's whole-table counts are kept. */
const AGGREGATES_TTL_MS = 10_000;

/** A redirect target from a form: only a dashboard path (no open redirect). */
function safeBack(value: string | undefined): string {
  if (value && /^\/dashboard(\/[\w~.%-]*)*$/.test(value) && !value.includes("//")) return value;
  return BASE;
}

/** The audit action of a form, known before its route runs (a refused CSRF token is audited under it). */
function postAction(path: string): string {
  const p = path.slice(BASE.length);
  if (p === "/login" || p === "/logout") return `dashboard${p.replace("/", ".")}`;
  if (p === "/audit/run") return "fleet.audit";
  if (p === "/tokens") return "token.create";
  if (p === "/operators") return "operator.create";
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

const withNotice = (path: string, notice: string) => `${path}${path.includes("?") ? "&" : "?"}notice=${notice}`;

/**
 * The operator dashboard at /dashboard: pages rendered on the server from the same
 * authority verbs as the operator API (which check the role), behind a session that an
 * operator token opens. No JavaScript; every state-changing form carries the session's
 * CSRF token and must come from this origin.
 */
export function dashboardRoutes(deps: DashboardDeps): Hono<Env> {
  const core = deps.authority.deps;
  const trustDomain = core.config.trustDomain;
  const profiles = [...core.profiles.keys()];
  const app = new Hono<Env>().basePath(BASE);
  const remote = (c: Context<Env>) => deps.peer(c).remoteAddress;
  const aggregateCache = new Map<number, FleetAggregates>();

  const page = async (
    c: Context<Env>,
    node: JSX.Element,
    status: 200 | 201 | 400 | 401 | 403 | 404 | 409 | 413 | 415 = 200,
  ) => {
    const html = await (node as unknown as { toString(): string | Promise<string> }).toString();
    return c.html(`<!doctype html>${html}`, status);
  };

  /** A refusal: audited under the route's action, answered with a page that says why. */
  const deny = async (c: Context<Env>, e: AuthorityError) => {
    c.set("refusal", e.reason);
    const session = c.get("session") as DashboardSession | undefined;
    await recordDenial(
      core,
      {
        action: c.get("action") ?? "dashboard.request",
        actor: session?.actor.id ?? "anonymous",
        remote: remote(c),
        deviceId: deviceOfPath(c.req.path),
      },
      e,
    );
    const status = STATUS[e.code] as 400 | 401 | 403 | 404 | 409 | 413 | 415;
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

  const field = (c: Context<Env>, name: string): string | undefined => {
    const v = c.get("form")[name];
    return typeof v === "string" ? v : undefined;
  };

  app.get("/login", async (c) => {
    const notice = c.req.query("notice");
    const next = c.req.query("next");
    return page(c, <LoginPage notice={notice} next={next ? safeBack(next) : undefined} />);
  });

  app.post("/login", async (c) => {
    c.set("action", "dashboard.login");
    const form = (await c.req.parseBody()) as Form;
    const token = typeof form.token === "string" ? form.token : undefined;
    const next = safeBack(typeof form.next === "string" ? form.next : undefined);
    try {
      const { secret, session } = await openDashboardSession(core, token, remote(c));
      setCookie(c, SESSION_COOKIE, secret, {
        path: "/",
        secure: true,
        httpOnly: true,
        sameSite: "Strict",
        maxAge: Math.max(1, Math.floor((session.absoluteExpiresAt.getTime() - core.clock.now().getTime()) / 1000)),
      });
      return c.redirect(next === `${BASE}/login` ? BASE : next, 303);
    } catch (e) {
      if (!(e instanceof AuthorityError) || e.code !== "unauthenticated") throw e;
      c.set("refusal", e.reason);
      await recordDenial(core, { action: "dashboard.login", actor: "anonymous", remote: remote(c) }, e);
      return page(c, <LoginPage error={e.publicMessage} next={next} />, 401);
    }
  });

  // Everything else needs a session; a form also needs the session's CSRF token.
  app.use("*", async (c, next) => {
    const secret = getCookie(c, SESSION_COOKIE);
    try {
      c.set("session", await resumeDashboardSession(core, secret, remote(c)));
    } catch (e) {
      if (!(e instanceof AuthorityError) || e.code !== "unauthenticated") throw e;
      if (secret === undefined && (c.req.method === "GET" || c.req.method === "HEAD")) {
        return c.redirect(`${BASE}/login?next=${encodeURIComponent(safeBack(c.req.path))}`, 303);
      }
      if (secret !== undefined) deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
      c.set("action", c.get("action") ?? "dashboard.session");
      if (c.req.method === "GET" || c.req.method === "HEAD") {
        c.set("refusal", e.reason);
        await recordDenial(core, { action: "dashboard.session", actor: "anonymous", remote: remote(c) }, e);
        return c.redirect(`${BASE}/login?notice=session-ended&next=${encodeURIComponent(safeBack(c.req.path))}`, 303);
      }
      return deny(c, e);
    }
    if (c.req.method === "POST") {
      c.set("form", (await c.req.parseBody()) as Form);
      checkCsrfToken(c.get("session"), field(c, "_csrf"));
      await next();
      // A change made here shows on the next overview.
      if (c.res.status < 400) aggregateCache.clear();
      return;
    }
    return next();
  });

  const actor = (c: Context<Env>) => c.get("session").actor;
  const session = (c: Context<Env>) => c.get("session");
  const invalid = (message: string) => badRequest("invalid_request", message);

  app.post("/logout", async (c) => {
    await closeDashboardSession(core, session(c));
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
    return c.redirect(`${BASE}/login?notice=signed-out`, 303);
  });

  // --- Overview -----------------------------------------------------------------
  app.get("/", async (c) => {
    c.set("action", "dashboard.overview");
    const days = Number(c.req.query("days") ?? 30);
    if (![7, 30, 90].includes(days)) throw invalid("days is 7, 30 or 90");
    // Whole-table counts are kept a few seconds (any change made here drops them): at a
    // million devices they take ~200 ms, which would otherwise stall the server per view.
    let aggregates = aggregateCache.get(days);
    if (!aggregates || core.clock.now().getTime() - aggregates.at.getTime() >= AGGREGATES_TTL_MS) {
      aggregates = await fleetAggregates(core, actor(c), days);
      aggregateCache.set(days, aggregates);
    }
    const o = await fleetOverview(core, actor(c), { days, notSeenFor: core.config.fleet.notSeenFor, aggregates });
    return page(c, <OverviewPage session={session(c)} o={o} days={days} notice={c.req.query("notice")} />);
  });

  app.post("/audit/run", async (c) => {
    c.set("action", "fleet.audit");
    if (deps.fleet) await deps.fleet.audit(actor(c), {});
    else {
      await runFleetAudit(core, actor(c), {
        notSeenFor: core.config.fleet.notSeenFor,
        cloneWindow: core.config.fleet.cloneWindow,
        cloneTakeovers: core.config.fleet.cloneTakeovers,
        afterChunk: () => new Promise((r) => setTimeout(r, 0)),
      });
    }
    return c.redirect(`${BASE}?notice=audit-done`, 303);
  });

  // --- Devices ------------------------------------------------------------------
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
    const p = await listDevices(core, actor(c), {
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
        now={core.clock.now()}
      />,
    );
  });

  app.get("/devices/:id", async (c) => {
    c.set("action", "device.show");
    const id = c.req.param("id");
    const detail = await showDevice(core, actor(c), id);
    const pending = await listEnrollments(core, actor(c), { deviceId: id, limit: 20 });
    const profile = core.profiles.get(detail.device.profile);
    return page(
      c,
      <DevicePage
        session={session(c)}
        detail={detail}
        pending={pending.items}
        trustDomain={trustDomain}
        isGateway={Boolean(profile?.gateway)}
        now={core.clock.now()}
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
      requireRole(actor(c), "operator");
      const detail = await showDevice(core, actor(c), id);
      return page(
        c,
        <ConfirmRevokePage
          session={session(c)}
          detail={detail}
          reason={reason}
          decommission={decommission}
          cascade={cascade}
          now={core.clock.now()}
        />,
      );
    }
    await revokeDevice(core, {
      deviceId: id,
      reason: reason as RevocationReason,
      status: decommission ? "decommissioned" : "revoked",
      cascade,
      actor: actor(c),
    });
    return c.redirect(withNotice(deviceHref(id), decommission ? "decommissioned" : "revoked"), 303);
  });

  app.post("/devices/:id/reinstate", async (c) => {
    c.set("action", "device.reinstate");
    const id = c.req.param("id");
    await reinstateDevice(core, { deviceId: id, note: "from the dashboard", actor: actor(c) });
    return c.redirect(withNotice(deviceHref(id), "reinstated"), 303);
  });

  app.post("/devices/:id/metadata", async (c) => {
    c.set("action", "device.metadata");
    const id = c.req.param("id");
    // An emptied field clears the value.
    const text = (name: string) => field(c, name)?.trim() || null;
    await setDeviceMetadata(core, actor(c), id, { owner: text("owner"), location: text("location") });
    return c.redirect(withNotice(deviceHref(id), "metadata-saved"), 303);
  });

  app.post("/devices/:id/rotate", async (c) => {
    c.set("action", "command.create");
    const id = c.req.param("id");
    await issueCommands(core, actor(c), "rotate", { deviceId: id });
    return c.redirect(withNotice(deviceHref(id), "rotate-queued"), 303);
  });

  // --- Approvals ----------------------------------------------------------------
  app.get("/enrollments", async (c) => {
    c.set("action", "enrollment.list");
    const status = (c.req.query("status") || "pending") as PendingStatus;
    if (!["pending", "approved", "rejected", "issued"].includes(status)) throw invalid("unknown status");
    const p = await listEnrollments(core, actor(c), {
      status,
      cursor: c.req.query("cursor") || undefined,
      limit: PAGE,
    });
    return page(
      c,
      <EnrollmentsPage
        session={session(c)}
        status={status}
        items={p.items}
        nextCursor={p.nextCursor}
        notice={c.req.query("notice")}
      />,
    );
  });

  app.post("/enrollments/:id/decide", async (c) => {
    const decision = field(c, "decision");
    if (decision !== "approve" && decision !== "reject") throw invalid("decision is approve or reject");
    c.set("action", `enrollment.${decision}`);
    await decideEnrollment(core, {
      id: c.req.param("id"),
      decision,
      reason: field(c, "reason"),
      actor: actor(c),
    });
    return c.redirect(withNotice(safeBack(field(c, "back")), decision === "approve" ? "approved" : "rejected"), 303);
  });

  // --- Tokens -------------------------------------------------------------------
  /** The tokens page: the list (by the query's filters), and the tokens just created, if any. */
  const tokensPage = async (c: Context<Env>, created?: CreatedTokenRow[]) => {
    const state = c.req.query("state") || undefined;
    if (state && !["unused", "used", "revoked", "expired"].includes(state)) throw invalid("unknown token state");
    const deviceId = c.req.query("deviceId")?.trim() || undefined;
    const p = await listTokens(core, actor(c), {
      state: state as "unused" | undefined,
      deviceId,
      cursor: c.req.query("cursor") || undefined,
      limit: PAGE,
    });
    return page(
      c,
      <TokensPage
        session={session(c)}
        profiles={profiles}
        items={p.items}
        state={state}
        deviceId={deviceId}
        nextCursor={p.nextCursor}
        now={core.clock.now()}
        created={created}
        notice={c.req.query("notice")}
      />,
      created ? 201 : 200,
    );
  };

  app.get("/tokens", async (c) => {
    c.set("action", "token.list");
    return tokensPage(c);
  });

  app.post("/tokens", async (c) => {
    c.set("action", "token.create");
    const profile = field(c, "profile") || undefined;
    if (profile && !profiles.includes(profile)) throw invalid("unknown profile");
    const ttlText = field(c, "ttl")?.trim() || undefined;
    if (ttlText && !isDuration(ttlText)) throw invalid("valid for: a duration such as 7d, 72h or 30m");
    const list = (s: string | undefined) =>
      (s ?? "")
        .split(/[\s,]+/)
        .map((x) => x.trim())
        .filter(Boolean);
    let deviceIds: string[];
    let names: { dns?: string[]; ip?: string[] } | undefined;
    if (field(c, "mode") === "single") {
      const id = field(c, "deviceId")?.trim();
      if (!id) throw invalid("give a device id");
      deviceIds = [id];
      const dns = list(field(c, "dns"));
      const ip = list(field(c, "ip"));
      if (dns.length || ip.length) names = { dns, ip };
    } else {
      deviceIds = list(field(c, "deviceIds"));
      const prefix = field(c, "prefix")?.trim();
      const count = field(c, "count")?.trim();
      if (prefix || count) {
        if (deviceIds.length) throw invalid("give device ids or a numbered series, not both");
        const n = Number(count);
        const start = Number(field(c, "start") || 1);
        if (!prefix || !Number.isInteger(n) || n < 1 || n > 10_000 || !Number.isInteger(start) || start < 0) {
          throw invalid("a series needs a prefix, a first number ≥ 0 and a count of 1-10000");
        }
        deviceIds = batchDeviceIds(prefix, start, n);
      }
      if (deviceIds.length === 0) throw invalid("give device ids or a numbered series");
      if (deviceIds.length > 10_000) throw invalid("at most 10000 devices per request");
    }
    const created = await issueTokens(core, actor(c), {
      deviceIds,
      profile,
      ttl: ttlText ? parseDuration(ttlText) : undefined,
      names,
    });
    if (field(c, "format") === "csv") {
      const stamp = core.clock.now().toISOString().replace(/[:.]/g, "-");
      return c.body(
        csv([
          ["device_id", "profile", "token_id", "token", "expires_at"],
          ...created.map((t) => [t.deviceId, t.profile, t.tokenId, t.token, t.expiresAt.toISOString()]),
        ]),
        200,
        {
          "content-type": "text/csv; charset=utf-8",
          "content-disposition": `attachment; filename="edgeid-tokens-${stamp}.csv"`,
        },
      );
    }
    return tokensPage(c, created);
  });

  app.post("/tokens/:id/revoke", async (c) => {
    c.set("action", "token.revoke");
    await revokeToken(core, actor(c), c.req.param("id"));
    return c.redirect(`${BASE}/tokens?notice=token-revoked`, 303);
  });

  // --- Legacy certificates --------------------------------------------------------
  /** Profiles with lifecycle controls: long-lived certificates with expiry alerts, or the RSA issuer. */
  const legacyProfiles = [...core.profiles.values()]
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
    const p = await expiringReport(core, actor(c), {
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
      const p = await expiringReport(core, actor(c), { within: parseDuration(within), profile, cursor, limit: 1000 });
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

  // --- Operators (admin) -------------------------------------------------------------
  const operatorsPage = async (c: Context<Env>, created?: { name: string; role: string; token: string }) => {
    const items = await listOperators(core, actor(c));
    return page(
      c,
      <OperatorsPage
        session={session(c)}
        items={items}
        now={core.clock.now()}
        created={created}
        notice={c.req.query("notice")}
      />,
      created ? 201 : 200,
    );
  };

  app.get("/operators", async (c) => {
    c.set("action", "operator.list");
    return operatorsPage(c);
  });

  app.post("/operators", async (c) => {
    c.set("action", "operator.create");
    const role = field(c, "role");
    if (role !== "admin" && role !== "operator" && role !== "auditor")
      throw invalid("role is admin, operator or auditor");
    const ttl = field(c, "ttl")?.trim() || undefined;
    if (ttl && !isDuration(ttl)) throw invalid("valid for: a duration such as 90d");
    const r = await createOperator(core, {
      name: field(c, "name")?.trim() ?? "",
      role,
      ttl: ttl ? parseDuration(ttl) : undefined,
      actor: actor(c),
    });
    return operatorsPage(c, { name: r.operator.name, role: r.operator.role, token: r.token });
  });

  app.post("/operators/:id/revoke", async (c) => {
    c.set("action", "operator.revoke");
    await revokeOperator(core, c.req.param("id"), actor(c));
    return c.redirect(`${BASE}/operators?notice=operator-revoked`, 303);
  });

  // --- Audit trail -----------------------------------------------------------------
  app.get("/audit", async (c) => {
    c.set("action", "audit.list");
    const q = c.req.query();
    const filters = {
      actor: q.actor?.trim() || undefined,
      action: q.action?.trim() || undefined,
      deviceId: q.deviceId?.trim() || undefined,
    };
    if (
      (filters.actor?.length ?? 0) > 128 ||
      (filters.action?.length ?? 0) > 64 ||
      (filters.deviceId?.length ?? 0) > 129
    ) {
      throw invalid("a filter is too long");
    }
    const p = await readAudit(core, actor(c), { ...filters, cursor: q.cursor || undefined, limit: PAGE });
    // Reading the whole chain yields to other requests between its pages.
    const chain =
      q.verify === "1" ? await verifyAuditChain(core, actor(c), () => new Promise((r) => setTimeout(r, 0))) : undefined;
    return page(
      c,
      <AuditPage session={session(c)} filters={filters} items={p.items} nextCursor={p.nextCursor} chain={chain} />,
    );
  });

  app.all("*", (c) => {
    c.set("action", "dashboard.request");
    throw new AuthorityError("not_found", "no such dashboard page", "unknown_page");
  });
  return app;
}
