import type { Context, Hono } from "hono";
import type { JSX } from "hono/jsx/jsx-runtime";
import type { Actor } from "../../../authority/actor.ts";
import type { Authority } from "../../../authority/authority.ts";
import { badRequest } from "../../../authority/errors.ts";
import type { DashboardSession, FleetAggregates } from "../../../authority/sessions.ts";
import type { PeerInfo } from "../../../ports/client-identity.ts";
import type { FleetApi } from "../../http/fleet-api.ts";
import { BASE } from "../layout.tsx";

export type Form = Record<string, string | File | (string | File)[]>;
export type Env = {
  Variables: { session: DashboardSession; form: Form; action: string; refusal: string; peer: PeerInfo };
};

/** What each resource's pages are registered with. */
export interface DashboardContext {
  app: Hono<Env>;
  authority: Authority;
  fleet?: FleetApi;
  /** Profile names, in configuration order. */
  profiles: string[];
  /** The overview's whole-table counts by days, kept a few seconds; any change made here drops them. */
  aggregates: Map<number, FleetAggregates>;
  /** The client's address, for the audit records. */
  remote(c: Context<Env>): string;
}

/** Rows per page of a list. */
export const PAGE = 50;

export type PageStatus = 200 | 201 | 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429;

/** A rendered page. */
export async function page(c: Context<Env>, node: JSX.Element, status: PageStatus = 200): Promise<Response> {
  const html = await (node as unknown as { toString(): string | Promise<string> }).toString();
  return c.html(`<!doctype html>${html}`, status);
}

/** A redirect target from a form: only a dashboard path (no open redirect). */
export function safeBack(value: string | undefined): string {
  if (value && /^\/dashboard(\/[\w~.%-]*)*$/.test(value) && !value.includes("//")) return value;
  return BASE;
}

export const withNotice = (path: string, notice: string) => `${path}${path.includes("?") ? "&" : "?"}notice=${notice}`;

/** One text field of the posted form. */
export const field = (c: Context<Env>, name: string): string | undefined => {
  const v = c.get("form")[name];
  return typeof v === "string" ? v : undefined;
};

export const actor = (c: Context<Env>): Actor => c.get("session").actor;
export const session = (c: Context<Env>): DashboardSession => c.get("session");
export const invalid = (message: string) => badRequest("invalid_request", message);
