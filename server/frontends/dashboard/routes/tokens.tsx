/** @jsxImportSource hono/jsx */
import type { Context } from "hono";
import type { TokenBatch } from "../../../authority/resources/tokens.ts";
import { MAX_TOKENS_PER_REQUEST } from "../../../authority/tokens.ts";
import { isDuration, parseDuration } from "../../../config/duration.ts";
import { csv } from "../format.ts";
import { BASE } from "../layout.tsx";
import { type CreatedTokenRow, TokensPage } from "../pages/tokens.tsx";
import { actor, type DashboardContext, type Env, field, invalid, PAGE, page, session } from "./context.ts";

/** Bootstrap tokens: listed, created one by one or as a numbered series, revoked. */
export function tokenRoutes({ app, authority, profiles }: DashboardContext): void {
  /** The tokens page: the list (by the query's filters), and the tokens just created, if any. */
  const tokensPage = async (c: Context<Env>, created?: CreatedTokenRow[]) => {
    const state = c.req.query("state") || undefined;
    if (state && !["unused", "used", "revoked", "expired"].includes(state)) throw invalid("unknown token state");
    const deviceId = c.req.query("deviceId")?.trim() || undefined;
    const p = await authority.tokens.list(actor(c), {
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
        now={authority.now()}
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
    let batch: Pick<TokenBatch, "deviceIds" | "series" | "names">;
    if (field(c, "mode") === "single") {
      const id = field(c, "deviceId")?.trim();
      if (!id) throw invalid("give a device id");
      const dns = list(field(c, "dns"));
      const ip = list(field(c, "ip"));
      batch = { deviceIds: [id], names: dns.length || ip.length ? { dns, ip } : undefined };
    } else {
      const deviceIds = list(field(c, "deviceIds"));
      const prefix = field(c, "prefix")?.trim();
      const count = field(c, "count")?.trim();
      if (prefix || count) {
        if (deviceIds.length) throw invalid("give device ids or a numbered series, not both");
        const n = Number(count);
        const start = Number(field(c, "start") || 1);
        if (
          !prefix ||
          !Number.isInteger(n) ||
          n < 1 ||
          n > MAX_TOKENS_PER_REQUEST ||
          !Number.isInteger(start) ||
          start < 0
        ) {
          throw invalid(`a series needs a prefix, a first number ≥ 0 and a count of 1-${MAX_TOKENS_PER_REQUEST}`);
        }
        batch = { series: { prefix, start, count: n } };
      } else {
        if (deviceIds.length === 0) throw invalid("give device ids or a numbered series");
        batch = { deviceIds };
      }
    }
    const created = await authority.tokens.create(actor(c), {
      ...batch,
      profile,
      ttl: ttlText ? parseDuration(ttlText) : undefined,
    });
    if (field(c, "format") === "csv") {
      const stamp = authority.now().toISOString().replace(/[:.]/g, "-");
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
    await authority.tokens.revoke(actor(c), c.req.param("id"));
    return c.redirect(`${BASE}/tokens?notice=token-revoked`, 303);
  });
}
