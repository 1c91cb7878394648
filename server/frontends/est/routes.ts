import { type Context, Hono } from "hono";
import type { Authority } from "../../authority/authority.ts";
import type { TokenCredentials } from "../../authority/caller.ts";
import { AuthorityError } from "../../authority/errors.ts";
import { Base64Error, decodeBase64, encodeBase64 } from "../../pki/base64.ts";
import { certsOnly } from "../../pki/pkcs7.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { readBody } from "../http/body.ts";
import type { AppEnv } from "../http/env.ts";
import { estErrorResponse } from "./errors.ts";
import { CSRATTRS, essence, PKCS7, PKCS7_CERTS_ONLY, PKCS8, PKCS10 } from "./media.ts";

export interface EstDeps {
  authority: Authority;
  peer: (c: Context<AppEnv>) => PeerInfo;
  maxBodyBytes: number;
  /** A fresh multipart boundary (random: it must not occur in the parts). */
  boundary: () => string;
}

const err = (code: AuthorityError["code"], reason: string, message: string) =>
  new AuthorityError(code, message, reason);

/** A base64 DER body, as RFC 7030 §4 and RFC 8951 §3.2 require, wrapped at 76 columns. */
function base64Body(der: Uint8Array, contentType: string): Response {
  return new Response(`${encodeBase64(der, 76)}\r\n`, {
    status: 200,
    headers: { "content-type": contentType, "content-transfer-encoding": "base64", "cache-control": "no-store" },
  });
}

/**
 * RFC 7030 §4.4.2: multipart/mixed with the private key (application/pkcs8, unencrypted:
 * it travels inside the TLS session only) and the certificate (PKCS#7 certs-only).
 */
function serverKeygenBody(pkcs8: Uint8Array, certs: Uint8Array, boundary: string): Response {
  const part = (type: string, der: Uint8Array) =>
    `--${boundary}\r\nContent-Type: ${type}\r\nContent-Transfer-Encoding: base64\r\n\r\n${encodeBase64(der, 76)}\r\n`;
  const body = `${part(PKCS8, pkcs8)}${part(PKCS7_CERTS_ONLY, certs)}--${boundary}--\r\n`;
  return new Response(body, {
    status: 200,
    headers: { "content-type": `multipart/mixed; boundary=${boundary}`, "cache-control": "no-store" },
  });
}

/**
 * EST over HTTPS (RFC 7030 §3.2.2): /.well-known/est/<op> and /.well-known/est/<label>/<op>.
 * Decodes, calls one authority verb, encodes. Decoding refusals are audited through
 * the authority like every other refusal.
 */
export function estRoutes(deps: EstDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { authority } = deps;

  /**
   * Errors from the authority verbs: already audited there. Internal errors go on to
   * the app's error handler, which logs the cause and answers 500.
   */
  const fail = (c: Context<AppEnv>, e: unknown): Response => {
    if (e instanceof AuthorityError && e.code !== "internal") {
      c.set("refusal", e.reason);
      return estErrorResponse(e);
    }
    throw e instanceof AuthorityError ? (e.cause ?? e) : e;
  };
  /** Refusals while decoding, before any verb ran: audited here through the authority. */
  const reject = async (
    c: Context<AppEnv>,
    action: string,
    e: unknown,
    creds?: TokenCredentials,
  ): Promise<Response> => {
    if (!(e instanceof AuthorityError)) throw e;
    c.set("refusal", e.reason);
    // A client past its refusal budget was counted when it was turned away.
    if (e.code !== "rate_limited") {
      await authority.rejectRequest({ action, peer: deps.peer(c), credentials: creds, error: e });
    }
    return estErrorResponse(e);
  };
  /** A client that spent its refusal budget is turned away before its body is read. */
  const admit = (c: Context<AppEnv>, action: string, creds?: TokenCredentials) =>
    authority.refusals.admit({
      action,
      remote: deps.peer(c).remoteAddress,
      deviceId: creds?.type === "basic" ? creds.username : undefined,
    });

  const readCsr = async (c: Context): Promise<Uint8Array> => {
    const type = essence(c.req.header("content-type"));
    if (type !== PKCS10) {
      throw err(
        "unsupported_media_type",
        "wrong_content_type",
        `Content-Type must be ${PKCS10} (got ${type.replace(/[^\x21-\x7e]/g, "?").slice(0, 64) || "none"})`,
      );
    }
    const body = await readBody(c, deps.maxBodyBytes);
    let der: Uint8Array;
    try {
      der = decodeBase64(new TextDecoder("latin1").decode(body));
    } catch (e) {
      if (e instanceof Base64Error)
        throw err("bad_request", "not_base64", "body is not base64 (RFC 7030 §4.2.1: base64-encoded DER PKCS#10)");
      throw e;
    }
    if (der.length === 0) throw err("bad_request", "empty_body", "body is empty; send a base64-encoded PKCS#10 CSR");
    return der;
  };

  const credentials = (c: Context): TokenCredentials | undefined => {
    const header = c.req.header("authorization");
    if (!header) return undefined;
    const [scheme, value = ""] = header.trim().split(/\s+/, 2);
    if (scheme?.toLowerCase() === "bearer" && value) return { type: "bearer", token: value };
    if (scheme?.toLowerCase() === "basic" && value) {
      let decoded: string;
      try {
        decoded = new TextDecoder("utf-8", { fatal: true }).decode(decodeBase64(value));
      } catch {
        throw err("unauthenticated", "credentials_malformed", "Authorization header is not valid HTTP Basic");
      }
      const colon = decoded.indexOf(":");
      if (colon < 0)
        throw err("unauthenticated", "credentials_malformed", "Authorization header is not valid HTTP Basic");
      return { type: "basic", username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    throw err(
      "unauthenticated",
      "credentials_malformed",
      "Authorization must be Basic (device id, token) or Bearer (token)",
    );
  };

  const mount = (prefix: string, labelOf: (c: Context) => string | undefined) => {
    app.get(`${prefix}/cacerts`, async (c) => {
      try {
        return base64Body(certsOnly(authority.cacerts(labelOf(c))), PKCS7);
      } catch (e) {
        return reject(c, "est.cacerts", e);
      }
    });
    app.get(`${prefix}/csrattrs`, async (c) => {
      try {
        return base64Body(authority.csrattrs(labelOf(c)), CSRATTRS);
      } catch (e) {
        return reject(c, "est.csrattrs", e);
      }
    });
    // First issuance, with a token or an IDevID: simpleenroll, and serverkeygen where the
    // server makes the key. Same decoding and refusals; only the verb and the answer differ.
    const firstIssuance = (op: "simpleenroll" | "serverkeygen") =>
      app.post(`${prefix}/${op}`, async (c) => {
        let creds: TokenCredentials | undefined;
        let csr: Uint8Array;
        try {
          admit(c, `est.${op}`);
          creds = credentials(c);
          admit(c, `est.${op}`, creds);
          csr = await readCsr(c);
        } catch (e) {
          return reject(c, `est.${op}`, e, creds);
        }
        try {
          const req = { label: labelOf(c), csr, credentials: creds, peer: deps.peer(c) };
          if (op === "simpleenroll") {
            const issued = await authority.enroll(req);
            return base64Body(certsOnly([issued.certificate]), PKCS7_CERTS_ONLY);
          }
          const issued = await authority.serverkeygen(req);
          return serverKeygenBody(issued.privateKey as Uint8Array, certsOnly([issued.certificate]), deps.boundary());
        } catch (e) {
          return fail(c, e);
        }
      });
    firstIssuance("simpleenroll");
    firstIssuance("serverkeygen");
    app.post(`${prefix}/simplereenroll`, async (c) => {
      let csr: Uint8Array;
      try {
        admit(c, "est.simplereenroll");
        csr = await readCsr(c);
      } catch (e) {
        return reject(c, "est.simplereenroll", e);
      }
      try {
        const issued = await authority.reenroll({ label: labelOf(c), csr, peer: deps.peer(c) });
        return base64Body(certsOnly([issued.certificate]), PKCS7_CERTS_ONLY);
      } catch (e) {
        return fail(c, e);
      }
    });
  };
  mount("/.well-known/est", () => undefined);
  mount("/.well-known/est/:label", (c) => c.req.param("label"));

  app.all("/.well-known/est/*", (c) => {
    const known = /\/(cacerts|csrattrs|simpleenroll|simplereenroll|serverkeygen)$/.test(c.req.path);
    return estErrorResponse(
      known
        ? err("method_not_allowed", "method_not_allowed", `${c.req.method} is not allowed for this EST operation`)
        : err(
            "not_found",
            "unknown_operation",
            "unknown EST operation; this server offers cacerts, csrattrs, simpleenroll, simplereenroll, serverkeygen",
          ),
    );
  });
  return app;
}
