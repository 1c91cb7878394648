import { z } from "@hono/zod-openapi";
import { MAX_TOKENS_PER_REQUEST } from "../../authority/tokens.ts";
import { ErrorSchema, TokenSchema, tokenView } from "../http/views.ts";
import {
  type ApiContext,
  actorOf,
  body,
  cursor,
  durationString,
  IdParam,
  json,
  limit,
  NamesSchema,
  page,
  route,
  seconds,
} from "./openapi.ts";

const CreatedTokenSchema = z
  .object({
    deviceId: z.string(),
    profile: z.string(),
    tokenId: z.string(),
    token: z.string(),
    expiresAt: z.string(),
  })
  .openapi("CreatedToken", { description: "The secret is in this response only; it is stored as a hash." });

/** Bootstrap tokens. */
export function tokenRoutes({ api, authority }: ApiContext): void {
  api.openapi(
    route({
      method: "get",
      path: "/tokens",
      operationId: "token.list",
      summary: "List bootstrap tokens (never their secrets)",
      request: {
        query: z.strictObject({
          deviceId: z.string().max(129).optional(),
          state: z.enum(["unused", "used", "revoked", "expired"]).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(TokenSchema, "TokenPage"), "a page of tokens") },
    }),
    async (c) => {
      const p = await authority.tokens.list(actorOf(c), c.req.valid("query"));
      const now = authority.now();
      return c.json({ items: p.items.map((t) => tokenView(t, now)), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/tokens",
      operationId: "token.create",
      summary: "Create bootstrap tokens: one device, a list, or a numbered batch",
      request: {
        ...body(
          z
            .strictObject({
              deviceId: z.string().max(129).optional(),
              deviceIds: z.array(z.string().max(64)).min(1).max(MAX_TOKENS_PER_REQUEST).optional(),
              count: z.number().int().min(1).max(MAX_TOKENS_PER_REQUEST).optional(),
              devicePrefix: z.string().min(1).max(48).optional(),
              start: z.number().int().min(0).max(1_000_000_000).optional(),
              /** Digits the numbers are padded to, for one request of a series larger than one request allows. */
              width: z.number().int().min(1).max(12).optional(),
              profile: z.string().max(32).optional(),
              ttl: durationString.optional(),
              names: NamesSchema.optional(),
            })
            .refine(
              (b) =>
                [b.deviceId !== undefined, b.deviceIds !== undefined, b.count !== undefined].filter(Boolean).length ===
                  1 && (b.count === undefined) === (b.devicePrefix === undefined),
              "give exactly one of deviceId, deviceIds, or count with devicePrefix",
            ),
        ),
      },
      responses: { 201: json(z.object({ tokens: z.array(CreatedTokenSchema) }), "created") },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const series =
        b.count !== undefined && b.devicePrefix !== undefined
          ? { prefix: b.devicePrefix, start: b.start ?? 1, count: b.count, width: b.width }
          : undefined;
      const created = await authority.tokens.create(actorOf(c), {
        deviceIds: b.deviceIds ?? (b.deviceId !== undefined ? [b.deviceId] : []),
        series,
        profile: b.profile,
        ttl: seconds(b.ttl),
        names: b.names,
      });
      return c.json({ tokens: created.map((t) => ({ ...t, expiresAt: t.expiresAt.toISOString() })) }, 201, {
        "cache-control": "no-store",
      });
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/tokens/{id}/revoke",
      operationId: "token.revoke",
      summary: "Revoke an unused bootstrap token",
      request: { params: IdParam, ...body(z.strictObject({})) },
      responses: {
        200: json(TokenSchema, "revoked"),
        404: json(ErrorSchema, "no such token"),
        409: json(ErrorSchema, "already used or revoked"),
      },
    }),
    async (c) => {
      return c.json(
        tokenView(await authority.tokens.revoke(actorOf(c), c.req.valid("param").id), authority.now()),
        200,
      );
    },
  );
}
