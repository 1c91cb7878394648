import { type Context, Hono } from "hono";
import type { Authority } from "../../authority/authority.ts";
import { AuthorityError } from "../../authority/errors.ts";
import type { RevocationResponders } from "../../authority/responders.ts";
import { Base64Error, decodeBase64 } from "../../pki/base64.ts";
import { ocspErrorResponse } from "../../pki/ocsp.ts";
import { certsOnly } from "../../pki/pkcs7.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { readBody } from "../http/body.ts";
import type { AppEnv } from "../http/env.ts";
import { textErrorResponse } from "../http/errors.ts";

export interface PkiDeps {
  authority: Authority;
  responders: RevocationResponders;
  peer: (c: Context<AppEnv>) => PeerInfo;
}

/** OCSP requests are small: one CertID is ~100 bytes; 16 of them and a nonce fit easily. */
const MAX_OCSP_REQUEST = 8 * 1024;
const OCSP_RESPONSE = "application/ocsp-response";

/**
 * The revocation responders at the URLs issued certificates carry: the CRL
 * (RFC 5280, DER, served from memory) and OCSP (RFC 6960 §A.1: POST with the DER
 * request, or GET with it base64 in the path). Both are open to anyone, as relying
 * parties are anonymous.
 */
export function pkiRoutes(deps: PkiDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  const refusals = deps.authority.refusals;
  /** Refusals before the OCSP layer: audited, plain text. */
  const refuse = async (c: Context<AppEnv>, action: string, error: AuthorityError): Promise<Response> => {
    c.set("refusal", error.reason);
    await deps.authority.rejectRequest({ action, peer: deps.peer(c), error });
    return textErrorResponse(error);
  };
  /** A malformed OCSP request: counted against the client's refusal budget, not audited by itself. */
  const malformed = async (c: Context<AppEnv>, response: Uint8Array): Promise<Response> => {
    c.set("refusal", "ocsp_malformedRequest");
    await refusals.count({ action: "pki.ocsp", remote: deps.peer(c).remoteAddress }, "ocsp_malformedRequest");
    return c.body(response as Uint8Array<ArrayBuffer>, 400, { "content-type": OCSP_RESPONSE });
  };
  /**
   * A client past its refusal budget gets 429 with Retry-After and the OCSP answer
   * tryLater (RFC 6960 §4.2.1), before its request is read.
   */
  const admitted = (c: Context<AppEnv>): Response | undefined => {
    try {
      refusals.admit({ action: "pki.ocsp", remote: deps.peer(c).remoteAddress });
      return undefined;
    } catch (e) {
      if (!(e instanceof AuthorityError) || e.code !== "rate_limited") throw e;
      c.set("refusal", e.reason);
      return c.body(ocspErrorResponse(3) as Uint8Array<ArrayBuffer>, 429, {
        "content-type": OCSP_RESPONSE,
        "retry-after": String(e.retryAfter),
        "cache-control": "no-store",
      });
    }
  };

  app.get("/pki/crl/:file", async (c) => {
    const m = /^([a-z0-9-]{1,64})\.crl$/.exec(c.req.param("file"));
    const crl = m ? deps.responders.currentCrl(m[1] as string) : undefined;
    if (!crl) return refuse(c, "pki.crl", new AuthorityError("not_found", "no such CRL", "unknown_crl"));
    const etag = `"${crl.number.toString()}"`;
    const headers = {
      etag,
      "last-modified": crl.thisUpdate.toUTCString(),
      // Caches must ask again (cheap with If-None-Match): a revocation replaces the CRL
      // at once, long before its nextUpdate.
      "cache-control": "no-cache",
      expires: crl.nextUpdate.toUTCString(),
    };
    if (c.req.header("if-none-match") === etag) return c.body(null, 304, headers);
    return c.body(crl.der as Uint8Array<ArrayBuffer>, 200, { ...headers, "content-type": "application/pkix-crl" });
  });

  /**
   * The issuing CAs' certificates, for relying parties and for certificate-path building
   * (RFC 5280 §4.2.2.1 caIssuers): `<ca>.crt`, the issuing CA certificate (DER,
   * application/pkix-cert, RFC 2585 §4.1), and `<ca>.p7c`, the issuing CA and its chain
   * up to the root as a certs-only CMS (DER, application/pkcs7-mime). Public data; a root
   * fetched here (or over any network) is no trust anchor — that comes out of band.
   */
  app.get("/pki/ca/:file", async (c) => {
    const m = /^([a-z0-9-]{1,64})\.(crt|p7c)$/.exec(c.req.param("file"));
    const chain = m ? deps.authority.issuingChain(m[1] as string) : undefined;
    const issuing = chain?.[0];
    if (!m || !chain || !issuing) {
      return refuse(c, "pki.ca", new AuthorityError("not_found", "no such CA certificate", "unknown_ca"));
    }
    const headers = { "cache-control": "public, max-age=3600" };
    if (m[2] === "crt") {
      return c.body(issuing as Uint8Array<ArrayBuffer>, 200, { ...headers, "content-type": "application/pkix-cert" });
    }
    return c.body(certsOnly(chain) as Uint8Array<ArrayBuffer>, 200, {
      ...headers,
      "content-type": "application/pkcs7-mime; smime-type=certs-only",
    });
  });

  const answer = async (c: Context<AppEnv>, der: Uint8Array): Promise<Response> => {
    const { der: response, status } = await deps.responders.ocsp(der);
    // A malformed request is a client error in HTTP terms too; the body is still the
    // OCSP malformedRequest response that OCSP clients understand.
    if (status === "malformedRequest") return malformed(c, response);
    if (status !== "successful") c.set("refusal", `ocsp_${status}`);
    return c.body(response as Uint8Array<ArrayBuffer>, 200, {
      "content-type": OCSP_RESPONSE,
      "cache-control": "no-cache",
    });
  };

  app.post("/pki/ocsp", async (c) => {
    const limited = admitted(c);
    if (limited) return limited;
    const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== "application/ocsp-request") {
      return refuse(
        c,
        "pki.ocsp",
        new AuthorityError(
          "unsupported_media_type",
          "Content-Type must be application/ocsp-request",
          "wrong_content_type",
        ),
      );
    }
    let body: Uint8Array;
    try {
      body = await readBody(c, MAX_OCSP_REQUEST);
    } catch (e) {
      if (e instanceof AuthorityError) return refuse(c, "pki.ocsp", e);
      throw e;
    }
    return answer(c, body);
  });

  app.get("/pki/ocsp/*", async (c) => {
    const limited = admitted(c);
    if (limited) return limited;
    const encoded = c.req.path.slice("/pki/ocsp/".length);
    let der: Uint8Array;
    try {
      if (encoded.length > (MAX_OCSP_REQUEST * 4) / 3 + 64) throw new Base64Error("too long");
      // RFC 6960 §A.1: url-encoding of the base64 encoding; some clients send base64url.
      der = decodeBase64(decodeURIComponent(encoded).replace(/-/g, "+").replace(/_/g, "/"));
    } catch {
      return malformed(c, ocspErrorResponse(1));
    }
    return answer(c, der);
  });

  app.all("/pki/*", (c) =>
    textErrorResponse(
      new AuthorityError("method_not_allowed", `${c.req.method} is not allowed here`, "method_not_allowed"),
    ),
  );
  return app;
}
