/** @jsxImportSource hono/jsx */
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { AuthorityError } from "../../../authority/errors.ts";
import { BASE } from "../layout.tsx";
import { LoginPage } from "../pages/common.tsx";
import { type DashboardContext, type Env, type Form, field, page, safeBack } from "./context.ts";

/** `__Host-`: the browser keeps it only if Secure, Path=/ and without Domain (RFC 6265bis). */
export const SESSION_COOKIE = "__Host-edgeid_session";

/**
 * Sign-in with an operator token, sign-out, and the session every other page needs (a
 * form also needs the session's CSRF token). Register before the pages it guards.
 */
export function sessionRoutes(
  { app, authority, aggregates, remote }: DashboardContext,
  deny: (c: Context<Env>, e: AuthorityError) => Promise<Response>,
): void {
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
    // A client that spent its refusal budget gets 429 (the dashboard's error page) before its token is checked.
    authority.refusals.admit({ action: "dashboard.login", remote: remote(c) });
    try {
      const { secret, session } = await authority.operators.openSession(token, remote(c));
      setCookie(c, SESSION_COOKIE, secret, {
        path: "/",
        secure: true,
        httpOnly: true,
        sameSite: "Strict",
        maxAge: Math.max(1, Math.floor((session.absoluteExpiresAt.getTime() - authority.now().getTime()) / 1000)),
      });
      return c.redirect(next === `${BASE}/login` ? BASE : next, 303);
    } catch (e) {
      if (!(e instanceof AuthorityError) || e.code !== "unauthenticated") throw e;
      c.set("refusal", e.reason);
      await authority.audit.refusal({ action: "dashboard.login", actor: "anonymous", remote: remote(c) }, e);
      return page(c, <LoginPage error={e.publicMessage} next={next} />, 401);
    }
  });

  // Everything else needs a session; a form also needs the session's CSRF token.
  app.use("*", async (c, next) => {
    const secret = getCookie(c, SESSION_COOKIE);
    try {
      c.set("session", await authority.operators.resumeSession(secret, remote(c)));
    } catch (e) {
      if (!(e instanceof AuthorityError) || e.code !== "unauthenticated") throw e;
      if (secret === undefined && (c.req.method === "GET" || c.req.method === "HEAD")) {
        return c.redirect(`${BASE}/login?next=${encodeURIComponent(safeBack(c.req.path))}`, 303);
      }
      if (secret !== undefined) deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
      c.set("action", c.get("action") ?? "dashboard.session");
      if (c.req.method === "GET" || c.req.method === "HEAD") {
        c.set("refusal", e.reason);
        await authority.audit.refusal({ action: "dashboard.session", actor: "anonymous", remote: remote(c) }, e);
        return c.redirect(`${BASE}/login?notice=session-ended&next=${encodeURIComponent(safeBack(c.req.path))}`, 303);
      }
      return deny(c, e);
    }
    if (c.req.method === "POST") {
      c.set("form", (await c.req.parseBody()) as Form);
      authority.operators.checkCsrf(c.get("session"), field(c, "_csrf"));
      await next();
      // A change made here shows on the next overview.
      if (c.res.status < 400) aggregates.clear();
      return;
    }
    return next();
  });

  app.post("/logout", async (c) => {
    await authority.operators.closeSession(c.get("session"));
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
    return c.redirect(`${BASE}/login?notice=signed-out`, 303);
  });
}
