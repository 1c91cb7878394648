import { createRoute, type OpenAPIHono, type RouteConfig, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import type { Actor } from "../../authority/actor.ts";
import type { Authority } from "../../authority/authority.ts";
import { REVOCATION_REASONS } from "../../authority/revoke.ts";
import { isDuration, parseDuration } from "../../config/duration.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import type { FleetApi } from "../http/fleet-api.ts";
import { ErrorSchema } from "../http/views.ts";

export type Env = { Variables: { actor: Actor; refusal: string; peer: PeerInfo; action: string } };
export type Api = OpenAPIHono<Env>;

/** What each resource's routes are registered with. */
export interface ApiContext {
  api: Api;
  authority: Authority;
  /** The fleet loop, where one runs. */
  fleet?: FleetApi;
}

export const API_BASE = "/api/v1";

export const durationString = z
  .string()
  .max(32)
  .refine(isDuration, "a duration such as 30d, 72h or 15m")
  .openapi({ example: "7d" });

export const limit = z.coerce.number().int().min(1).max(1000).optional().openapi({ example: 100 });
export const cursor = z.string().max(512).optional().openapi({ description: "nextCursor of the previous page" });
export const reason = z.enum(Object.keys(REVOCATION_REASONS) as [keyof typeof REVOCATION_REASONS]);

export const page = <T extends z.ZodType>(item: T, name: string) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() }).openapi(name);

export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

const errors = {
  400: json(ErrorSchema, "invalid request"),
  401: json(ErrorSchema, "no, unknown, expired or revoked operator token"),
  403: json(ErrorSchema, "the token's role does not allow this"),
};

/**
 * A route with the API's security scheme and error responses. Its operationId is
 * also the action name of its audit records.
 */
export function route<R extends RouteConfig & { operationId: string }>(r: R) {
  const action: MiddlewareHandler<Env> = async (c, next) => {
    c.set("action", r.operationId);
    await next();
  };
  return createRoute({
    ...r,
    middleware: [action],
    security: [{ bearer: [] }],
    responses: { ...errors, ...r.responses },
  });
}

export const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { "application/json": { schema } }, required: true },
});

const pathId = z.string().min(1).max(160);
export const IdParam = z.object({ id: pathId });
/** DNS names and IP addresses an operator declares for a device. */
export const NamesSchema = z
  .strictObject({
    dns: z.array(z.string().min(1).max(253)).max(64).optional(),
    ip: z.array(z.string().min(1).max(45)).max(64).optional(),
  })
  .openapi({ description: "DNS names and IP addresses declared for the device; its certificates carry them" });
export const SerialParam = z.object({ serial: pathId.openapi({ description: "hex serial number" }) });

export const actorOf = (c: Context<Env>): Actor => c.get("actor");

/** Seconds from an optional duration text. */
export const seconds = (d: string | undefined): number | undefined => (d === undefined ? undefined : parseDuration(d));
