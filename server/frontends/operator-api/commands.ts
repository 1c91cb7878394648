import { z } from "@hono/zod-openapi";
import { OPERATOR_COMMANDS } from "../../authority/commands.ts";
import { CommandSchema, commandView, ErrorSchema } from "../http/views.ts";
import {
  type ApiContext,
  actorOf,
  body,
  cursor,
  durationString,
  IdParam,
  json,
  limit,
  page,
  route,
  seconds,
} from "./openapi.ts";

/** Commands to devices and their results. */
export function commandRoutes({ api, authority }: ApiContext): void {
  api.openapi(
    route({
      method: "post",
      path: "/commands",
      operationId: "command.create",
      summary: "Send a command (rotate, ca-update) to one device or a filtered set of active devices",
      description:
        "The commands are queued and published over MQTT (edgeid/v1/devices/<id>/cmd/<command>); each device's cmd-result closes its command. Name one device, a filter (profile, expiringWithin), or all: true.",
      request: {
        ...body(
          z.strictObject({
            command: z.enum(OPERATOR_COMMANDS),
            deviceId: z.string().max(129).optional(),
            profile: z.string().max(32).optional(),
            expiringWithin: durationString.optional(),
            all: z.boolean().optional(),
          }),
        ),
      },
      responses: {
        202: json(
          z
            .object({ batchId: z.string(), command: z.string(), count: z.number(), opIds: z.array(z.string()) })
            .openapi("CommandBatch"),
          "queued",
        ),
        404: json(ErrorSchema, "no such device"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const r = await authority.commands.create(actorOf(c), b.command, {
        deviceId: b.deviceId,
        profile: b.profile,
        expiringWithin: seconds(b.expiringWithin),
        all: b.all,
      });
      return c.json(r, 202);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/commands",
      operationId: "command.list",
      summary: "Commands and their results",
      request: {
        query: z.strictObject({
          deviceId: z.string().max(129).optional(),
          batchId: z.string().max(64).optional(),
          state: z.enum(["queued", "sent", "succeeded", "failed", "expired"]).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(CommandSchema, "CommandPage"), "a page of commands") },
    }),
    async (c) => {
      const p = await authority.commands.list(actorOf(c), c.req.valid("query"));
      return c.json({ items: p.items.map(commandView), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/commands/{id}",
      operationId: "command.show",
      summary: "One command by op id",
      request: { params: IdParam },
      responses: { 200: json(CommandSchema, "the command"), 404: json(ErrorSchema, "no such command") },
    }),
    async (c) => c.json(commandView(await authority.commands.show(actorOf(c), c.req.valid("param").id)), 200),
  );
}
