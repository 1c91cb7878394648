import { z } from "@hono/zod-openapi";
import { toPem } from "../../pki/pem.ts";
import { CertificateSchema, certificateView, ErrorSchema } from "../http/views.ts";
import {
  type ApiContext,
  actorOf,
  body,
  durationString,
  IdParam,
  json,
  NamesSchema,
  reason,
  route,
  SerialParam,
  seconds,
} from "./openapi.ts";

/** Certificates by serial, and issuance for appliances with no EST client. */
export function certificateRoutes({ api, authority }: ApiContext): void {
  api.openapi(
    route({
      method: "post",
      path: "/devices/{id}/certificates",
      operationId: "certificate.sign",
      summary: "Issue for an appliance with no EST client: sign its CSR, or make its key (operator)",
      description:
        "With csr (PEM or base64 DER) the request is checked as at enrollment: the profile's key policy, names decided by the server (CN = device id, the SPIFFE URI), a key no other device holds. With generateKey: true the server makes the key (profiles with serverKeygen only) and returns it once, PKCS#8 PEM; it is not stored. The device is created if new.",
      request: {
        params: IdParam,
        ...body(
          z
            .strictObject({
              profile: z.string().min(1).max(32),
              csr: z.string().min(1).max(16_384).optional(),
              generateKey: z.literal(true).optional(),
              names: NamesSchema.optional(),
              validity: durationString
                .optional()
                .openapi({ description: "shorter than the profile's validity, which is the maximum" }),
            })
            .refine((b) => (b.csr === undefined) !== (b.generateKey === undefined), "give csr or generateKey: true"),
        ),
      },
      responses: {
        201: json(
          z
            .object({
              deviceId: z.string(),
              serial: z.string(),
              notAfter: z.string(),
              certificate: z.string(),
              chain: z.string(),
              privateKey: z.string().optional(),
            })
            .openapi("SignedCertificate"),
          "issued: the certificate and the chain up to the root, PEM (and the key, when the server made it)",
        ),
        409: json(ErrorSchema, "the device holds a certificate of another profile"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const { issued, chain } = await authority.certificates.sign(actorOf(c), c.req.valid("param").id, {
        profile: b.profile,
        csr: b.generateKey ? undefined : (b.csr ?? ""),
        names: b.names,
        validity: seconds(b.validity),
      });
      const privateKey = "privateKey" in issued ? toPem("PRIVATE KEY", issued.privateKey as Uint8Array) : undefined;
      return c.json(
        {
          deviceId: issued.deviceId,
          serial: issued.serial,
          notAfter: issued.notAfter.toISOString(),
          certificate: toPem("CERTIFICATE", issued.certificate),
          chain: chain.map((d) => toPem("CERTIFICATE", d)).join(""),
          ...(privateKey ? { privateKey } : {}),
        },
        201,
        { "cache-control": "no-store" },
      );
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/certificates/{serial}",
      operationId: "certificate.show",
      summary: "One certificate by serial (hex)",
      request: { params: SerialParam },
      responses: { 200: json(CertificateSchema, "the certificate"), 404: json(ErrorSchema, "no such certificate") },
    }),
    async (c) => {
      return c.json(certificateView(await authority.certificates.show(actorOf(c), c.req.valid("param").serial)), 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/certificates/{serial}/revoke",
      operationId: "certificate.revoke",
      summary: "Revoke one certificate (the device keeps its status)",
      request: { params: SerialParam, ...body(z.strictObject({ reason })) },
      responses: {
        200: json(CertificateSchema, "revoked"),
        404: json(ErrorSchema, "no such certificate"),
        409: json(ErrorSchema, "already revoked or expired"),
      },
    }),
    async (c) => {
      const cert = await authority.certificates.revoke(
        actorOf(c),
        c.req.valid("param").serial,
        c.req.valid("json").reason,
      );
      return c.json(certificateView(cert), 200);
    },
  );
}
