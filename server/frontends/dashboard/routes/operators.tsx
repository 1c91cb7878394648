/** @jsxImportSource hono/jsx */
import type { Context } from "hono";
import { isDuration, parseDuration } from "../../../config/duration.ts";
import { BASE } from "../layout.tsx";
import { OperatorsPage } from "../pages/operators.tsx";
import { actor, type DashboardContext, type Env, field, invalid, page, session } from "./context.ts";

/** Operators and their tokens (admin). */
export function operatorRoutes({ app, authority }: DashboardContext): void {
  const operatorsPage = async (c: Context<Env>, created?: { name: string; role: string; token: string }) => {
    const items = await authority.operators.list(actor(c));
    return page(
      c,
      <OperatorsPage
        session={session(c)}
        items={items}
        now={authority.now()}
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
    const r = await authority.operators.create(actor(c), {
      name: field(c, "name")?.trim() ?? "",
      role,
      ttl: ttl ? parseDuration(ttl) : undefined,
    });
    return operatorsPage(c, { name: r.operator.name, role: r.operator.role, token: r.token });
  });

  app.post("/operators/:id/revoke", async (c) => {
    c.set("action", "operator.revoke");
    await authority.operators.revoke(actor(c), c.req.param("id"));
    return c.redirect(`${BASE}/operators?notice=operator-revoked`, 303);
  });
}
