import { z } from "@hono/zod-openapi";
import { ErrorSchema, OperatorSchema, operatorView } from "../http/views.ts";
import { type ApiContext, actorOf, body, durationString, IdParam, json, route, seconds } from "./openapi.ts";

/** The caller, and operators (admin). */
export function operatorRoutes({ api, authority }: ApiContext): void {
  api.openapi(
    route({
      method: "get",
      path: "/whoami",
      operationId: "whoami",
      summary: "The operator this token belongs to",
      responses: { 200: json(z.object({ actor: z.string(), role: z.string() }), "the caller") },
    }),
    (c) => c.json({ actor: actorOf(c).id, role: actorOf(c).role }, 200),
  );

  api.openapi(
    route({
      method: "get",
      path: "/operators",
      operationId: "operator.list",
      summary: "Operators (admin)",
      responses: { 200: json(z.object({ items: z.array(OperatorSchema) }), "all operators") },
    }),
    async (c) => c.json({ items: (await authority.operators.list(actorOf(c))).map(operatorView) }, 200),
  );

  api.openapi(
    route({
      method: "post",
      path: "/operators",
      operationId: "operator.create",
      summary: "Create an operator and its token (admin); the token is in this response only",
      request: {
        ...body(
          z.strictObject({
            name: z.string().min(1).max(64),
            role: z.enum(["admin", "operator", "auditor"]),
            ttl: durationString.optional(),
          }),
        ),
      },
      responses: {
        201: json(OperatorSchema.extend({ token: z.string() }).openapi("CreatedOperator"), "created"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const r = await authority.operators.create(actorOf(c), { name: b.name, role: b.role, ttl: seconds(b.ttl) });
      return c.json({ ...operatorView(r.operator), token: r.token }, 201, { "cache-control": "no-store" });
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/operators/{id}/revoke",
      operationId: "operator.revoke",
      summary: "Revoke an operator's token (admin)",
      request: { params: IdParam, ...body(z.strictObject({})) },
      responses: {
        200: json(OperatorSchema, "revoked"),
        404: json(ErrorSchema, "no such operator"),
        409: json(ErrorSchema, "already revoked, or the last admin"),
      },
    }),
    async (c) => c.json(operatorView(await authority.operators.revoke(actorOf(c), c.req.valid("param").id)), 200),
  );
}
