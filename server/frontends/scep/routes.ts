import { type Context, Hono } from "hono";
import type { Authority } from "../../authority/authority.ts";
import { AuthorityError } from "../../authority/errors.ts";
import { SCEP_UNKNOWN_ACTION } from "../../authority/scep.ts";
import { Base64Error, decodeBase64 } from "../../pki/base64.ts";
import { certsOnly } from "../../pki/pkcs7.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { readBody } from "../http/body.ts";
import type { AppEnv } from "../http/env.ts";
import { textErrorResponse } from "../http/errors.ts";

export interface ScepDeps {
  authority: Authority;
  peer: (c: Context<AppEnv>) => PeerInfo;
  maxBodyBytes: number;
  /** The current CRL of an issuing CA by name (GetCRL). */
  crlOf: (caName: string) => Uint8Array | undefined;
}

/** RFC 8894 §4 media types. */
const PKI_MESSAGE = "application/x-pki-message";
const CA_RA_CERT = "application/x-x509-ca-ra-cert";

const KNOWN_ACTIONS: Record<string, string> = {
  GetCACaps: "scep.getcacaps",
  GetCACert: "scep.getcacert",
  PKIOperation: SCEP_UNKNOWN_ACTION,
};

const err = (code: AuthorityError["code"], reason: string, message: string) =>
  new AuthorityError(code, message, reason);

/**
 * SCEP over HTTP (RFC 8894 §4): `<prefix>?operation=…` and `<prefix>/<label>?operation=…`,
 * the label naming a profile as in EST. GetCACaps and GetCACert are plain GETs;
 * PKIOperation comes as a POST body (DER) or a GET `message` (base64). Every refusal of
 * a PKIOperation is a CertRep with a failInfo, audited by the authority; only what
 * comes before a message (budget, size, unknown label or operation) is an HTTP status.
 */
export function scepRoutes(deps: ScepDeps, prefix = "/scep"): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { authority } = deps;

  const reject = async (c: Context<AppEnv>, action: string, e: unknown): Promise<Response> => {
    if (!(e instanceof AuthorityError) || e.code === "internal") throw e;
    c.set("refusal", e.reason);
    if (e.code !== "rate_limited") await authority.rejectRequest({ action, peer: deps.peer(c), error: e });
    return textErrorResponse(e);
  };

  const pkiOperation = async (c: Context<AppEnv>, label: string | undefined, message: Uint8Array) => {
    const reply = await authority.scepOperation({
      label,
      message,
      peer: deps.peer(c),
      crlOf: deps.crlOf,
    });
    if (reply.refusal) c.set("refusal", reply.refusal.reason);
    return c.body(reply.body as Uint8Array<ArrayBuffer>, 200, {
      "content-type": PKI_MESSAGE,
      "cache-control": "no-store",
    });
  };

  const handle = async (c: Context<AppEnv>, label: string | undefined): Promise<Response> => {
    const operation = c.req.query("operation") ?? "";
    // A fixed set of actions: the refusal budget aggregates by action, so a client's
    // made-up operation names must not become actions of their own.
    const action = Object.hasOwn(KNOWN_ACTIONS, operation) ? (KNOWN_ACTIONS[operation] as string) : "scep.unknown";
    try {
      authority.refusals.admit({ action, remote: deps.peer(c).remoteAddress });
      if (operation === "GetCACaps" && c.req.method === "GET") {
        return c.text(`${authority.scepCapabilities(label).join("\n")}\n`, 200, { "cache-control": "no-store" });
      }
      if (operation === "GetCACert" && c.req.method === "GET") {
        const certs = authority.scepCaCertificates(label);
        return c.body(certsOnly(certs) as Uint8Array<ArrayBuffer>, 200, { "content-type": CA_RA_CERT });
      }
      if (operation === "PKIOperation" && c.req.method === "POST") {
        return await pkiOperation(c, label, await readBody(c, deps.maxBodyBytes));
      }
      if (operation === "PKIOperation" && c.req.method === "GET") {
        const encoded = c.req.query("message") ?? "";
        if (encoded.length > (deps.maxBodyBytes * 4) / 3 + 4) {
          throw err("payload_too_large", "payload_too_large", `message exceeds ${deps.maxBodyBytes} bytes`);
        }
        let message: Uint8Array;
        try {
          message = decodeBase64(encoded);
        } catch (e) {
          if (!(e instanceof Base64Error)) throw e;
          // Not a message at all: the authority answers badRequest like any other garbage.
          message = new Uint8Array(0);
        }
        return await pkiOperation(c, label, message);
      }
      if (["GetCACaps", "GetCACert", "PKIOperation"].includes(operation)) {
        throw err("method_not_allowed", "method_not_allowed", `${c.req.method} is not allowed for ${operation}`);
      }
      throw err(
        "bad_request",
        "unknown_operation",
        "unknown SCEP operation; this server offers GetCACaps, GetCACert and PKIOperation",
      );
    } catch (e) {
      return reject(c, action, e);
    }
  };

  // Many clients append the CGI name of the first SCEP servers (RFC 8894 §4.1: the path
  // is the server's to choose; "pkiclient.exe" is what they expect to be able to add).
  app.on(["GET", "POST"], [prefix, `${prefix}/pkiclient.exe`], (c) => handle(c, undefined));
  app.on(["GET", "POST"], [`${prefix}/:label`, `${prefix}/:label/pkiclient.exe`], (c) =>
    handle(c, c.req.param("label")),
  );
  return app;
}
