import { z } from "@hono/zod-openapi";
import { EnrollmentSchema, ErrorSchema, enrollmentView } from "../http/views.ts";
import { type ApiContext, actorOf, body, cursor, IdParam, json, limit, page, route } from "./openapi.ts";

/** Enrollment requests that wait for an operator's decision. */
export function enrollmentRoutes({ api, authority }: ApiContext): void {
  api.openapi(
    route({
      method: "get",
      path: "/enrollments",
      operationId: "enrollment.list",
      summary: "Enrollment requests that wait for (or had) an operator's decision",
      request: {
        query: z.strictObject({
          status: z.enum(["pending", "approved", "rejected", "issued"]).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(EnrollmentSchema, "EnrollmentPage"), "a page of requests") },
    }),
    async (c) => {
      const p = await authority.enrollments.list(actorOf(c), c.req.valid("query"));
      return c.json({ items: p.items.map(enrollmentView), nextCursor: p.nextCursor }, 200);
    },
  );

  for (const decision of ["approve", "reject"] as const) {
    api.openapi(
      route({
        method: "post",
        path: `/enrollments/{id}/${decision}`,
        operationId: `enrollment.${decision}`,
        summary:
          decision === "approve"
            ? "Approve: the device's next retry gets its certificate"
            : "Reject: the device's next retry is refused",
        request: { params: IdParam, ...body(z.strictObject({ reason: z.string().max(500).optional() })) },
        responses: {
          200: json(EnrollmentSchema, "decided"),
          404: json(ErrorSchema, "no such request"),
          409: json(ErrorSchema, "already decided"),
        },
      }),
      async (c) => {
        const id = c.req.valid("param").id;
        const p = await authority.enrollments.decide(actorOf(c), id, decision, c.req.valid("json").reason);
        return c.json(enrollmentView(p), 200);
      },
    );
  }
}
