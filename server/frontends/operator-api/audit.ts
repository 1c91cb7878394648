import { z } from "@hono/zod-openapi";
import { yieldToOthers } from "../http/pause.ts";
import { AuditEventSchema, auditView } from "../http/views.ts";
import { type ApiContext, actorOf, cursor, json, limit, page, route } from "./openapi.ts";

/** The audit trail and its hash chain. */
export function auditRoutes({ api, authority }: ApiContext): void {
  api.openapi(
    route({
      method: "get",
      path: "/audit",
      operationId: "audit.list",
      summary: "The audit trail, newest first",
      request: {
        query: z.strictObject({
          deviceId: z.string().max(129).optional(),
          actor: z.string().max(128).optional(),
          action: z.string().max(64).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(AuditEventSchema, "AuditPage"), "a page of audit records") },
    }),
    async (c) => {
      const p = await authority.audit.list(actorOf(c), c.req.valid("query"));
      return c.json({ items: p.items.map(auditView), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/audit/verify",
      operationId: "audit.verify",
      summary: "Check the audit hash chain from the first record to the newest",
      responses: {
        200: json(
          z
            .object({
              ok: z.boolean(),
              records: z.number(),
              head: z.string().nullable(),
              lastId: z.number().nullable(),
              broken: z.object({ id: z.number(), problem: z.string() }).optional(),
            })
            .openapi("AuditChainReport"),
          "the report (ok: false names the first broken record)",
        ),
      },
    }),
    async (c) => c.json(await authority.audit.verify(actorOf(c), yieldToOthers), 200),
  );
}
