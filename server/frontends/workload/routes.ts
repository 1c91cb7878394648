import { type Context, Hono } from "hono";
import { z } from "zod";
import type { Authority } from "../../authority/authority.ts";
import { AuthorityError } from "../../authority/errors.ts";
import { MAX_ENTRIES_PER_DEVICE } from "../../authority/workloads.ts";
import { Base64Error, decodeBase64, encodeBase64 } from "../../pki/base64.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { readBody } from "../http/body.ts";
import type { AppEnv } from "../http/env.ts";
import { textErrorResponse } from "../http/errors.ts";

/** The largest request body of the workload routes (the contract's 256 KiB). */
export const WORKLOAD_MAX_BODY = 256 * 1024;

export interface WorkloadRouteDeps {
  authority: Authority;
  peer: (c: Context<AppEnv>) => PeerInfo;
}

const X509SvidBatch = z.object({
  requests: z
    .array(z.object({ entryId: z.string().min(1).max(64), csr: z.string().min(1) }).strict())
    .min(1)
    .max(MAX_ENTRIES_PER_DEVICE),
});

const JwtSvidAsk = z
  .object({
    entryId: z.string().min(1).max(64),
    // The signer's own rule: 1–32 audiences of printable characters.
    audience: z.array(z.string().min(1).max(256)).min(1).max(32),
  })
  .strict();

const bad = (reason: string, message: string) => new AuthorityError("bad_request", message, reason);

/**
 * A JSON request body of the workload routes: `application/json`, at most 256 KiB, that
 * parses and fits `schema`; else the precise 4xx (audited by the caller).
 */
export async function readJsonBody<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") {
    throw new AuthorityError(
      "unsupported_media_type",
      `Content-Type must be application/json (got ${(type ?? "").replace(/[^\x21-\x7e]/g, "?").slice(0, 64) || "none"})`,
      "wrong_content_type",
    );
  }
  const body = await readBody(c, WORKLOAD_MAX_BODY);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw bad("malformed_json", "body is not JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "body";
    throw bad("bad_body", `${where}: ${issue?.message ?? "invalid"}`.slice(0, 200));
  }
  return parsed.data;
}

const json = (body: unknown) =>
  new Response(JSON.stringify(body), {
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });

/**
 * The device's workload routes on the HTTPS listener (SPIFFE workload identity for the
 * agent): authenticated by the device's current certificate over mutual TLS, exactly as
 * simplereenroll is. `GET /workload/v1/entries`, `POST /workload/v1/x509-svids`,
 * `POST /workload/v1/jwt-svids`.
 */
export function workloadRoutes(deps: WorkloadRouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { authority } = deps;

  /** A refusal from a verb (audited there), or one decided here before any verb ran (audited here). */
  const fail = async (c: Context<AppEnv>, action: string, e: unknown, decoded: boolean): Promise<Response> => {
    if (!(e instanceof AuthorityError) || e.code === "internal") {
      throw e instanceof AuthorityError ? (e.cause ?? e) : e;
    }
    c.set("refusal", e.reason);
    if (!decoded && e.code !== "rate_limited") {
      await authority.rejectRequest({ action, peer: deps.peer(c), error: e });
    }
    return textErrorResponse(e);
  };

  app.get("/workload/v1/entries", async (c) => {
    try {
      authority.refusals.admit({ action: "workload.entries", remote: deps.peer(c).remoteAddress });
    } catch (e) {
      return fail(c, "workload.entries", e, false);
    }
    try {
      return json(await authority.workloadSvids.entries(deps.peer(c)));
    } catch (e) {
      return fail(c, "workload.entries", e, true);
    }
  });

  app.post("/workload/v1/x509-svids", async (c) => {
    const action = "workload.x509_svid";
    let requests: { entryId: string; csr: Uint8Array }[];
    try {
      authority.refusals.admit({ action, remote: deps.peer(c).remoteAddress });
      const batch = await readJsonBody(c, X509SvidBatch);
      requests = batch.requests.map((r, i) => {
        try {
          return { entryId: r.entryId, csr: decodeBase64(r.csr) };
        } catch (e) {
          if (e instanceof Base64Error) throw bad("not_base64", `requests.${i}.csr is not base64 DER`);
          throw e;
        }
      });
    } catch (e) {
      return fail(c, action, e, false);
    }
    try {
      const issued = await authority.workloadSvids.issueX509(deps.peer(c), requests);
      return json({
        svids: issued.svids.map((s) => ({
          entryId: s.entryId,
          spiffeId: s.spiffeId,
          certificate: encodeBase64(s.certificate),
          chain: s.chain.map((d) => encodeBase64(d)),
          serial: s.serial,
          notAfter: s.notAfter.toISOString(),
        })),
        bundle: issued.bundle.map((d) => encodeBase64(d)),
      });
    } catch (e) {
      return fail(c, action, e, true);
    }
  });

  app.post("/workload/v1/jwt-svids", async (c) => {
    const action = "workload.jwt_svid";
    let ask: z.infer<typeof JwtSvidAsk>;
    try {
      authority.refusals.admit({ action, remote: deps.peer(c).remoteAddress });
      ask = await readJsonBody(c, JwtSvidAsk);
    } catch (e) {
      return fail(c, action, e, false);
    }
    try {
      const jwt = await authority.workloadSvids.issueJwt(deps.peer(c), ask.entryId, ask.audience);
      return json({ spiffeId: jwt.spiffeId, token: jwt.token, expiresAt: jwt.expiresAt.toISOString() });
    } catch (e) {
      return fail(c, action, e, true);
    }
  });

  return app;
}
