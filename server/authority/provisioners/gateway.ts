import type { Profile } from "../../config/schema.ts";
import { type ParsedCsr, parseCsr } from "../../pki/csr.ts";
import type { ClientIdentity } from "../../ports/client-identity.ts";
import { type Caller, findOwnCertificate } from "../caller.ts";
import type { AuthorityDeps } from "../deps.ts";
import type { Authorized, BrokeringGateway, EnrollRequest } from "../enrollment-request.ts";
import { badRequest, forbidden } from "../errors.ts";
import { applianceId, parseApplianceSpiffeId } from "../identity.ts";
import { resolveProfile } from "../profiles.ts";
import { authenticateClientCertificate } from "./client-certificate.ts";

/**
 * The gateway behind a TLS client certificate, if the certificate is ours and its
 * device is in a gateway profile; then it must pass every check of mutual-TLS
 * re-enrollment (unexpired, unrevoked, current, device active), or the request is
 * refused with that check's reason. Undefined for any other client certificate.
 */
export async function brokeringGateway(
  deps: AuthorityDeps,
  client: ClientIdentity,
  caller: Caller,
): Promise<BrokeringGateway | undefined> {
  const own = await findOwnCertificate(deps, client);
  const profile = own && deps.profiles.get(own.profile);
  if (!profile?.gateway) return undefined;
  const { certificate, device } = await authenticateClientCertificate(deps, client, caller);
  return {
    device,
    certificate,
    profile,
    applianceProfile: profile.gateway.applianceProfile,
    maxAppliances: profile.gateway.maxAppliances,
  };
}

/**
 * Gateway-brokered enrollment: a gateway enrolls an appliance behind it at its
 * appliance profile's label, with its own certificate. The appliance is named by the
 * one URI the CSR asks for, which must lie in the gateway's own namespace
 * (spiffe://<td>/gateway/<gateway id>/appliance/<name>); its inventory id is
 * `<gateway id>~<name>`. A new appliance counts against the gateway's quota.
 */
export async function authorizeAppliance(
  deps: AuthorityDeps,
  req: EnrollRequest,
  labelled: Profile | undefined,
  gateway: BrokeringGateway,
): Promise<Authorized> {
  const gw = gateway.device.id;
  const td = deps.config.trustDomain;
  const namespace = `spiffe://${td}/gateway/${gw}/appliance/<name>`;
  const profile = resolveProfile(deps, gateway.applianceProfile);
  if (labelled?.name !== profile.name) {
    throw forbidden(
      "gateway_wrong_label",
      `gateway ${gw} enrolls appliances at /.well-known/est/${profile.name}/simpleenroll (its own certificate renews at simplereenroll)`,
    );
  }
  let csr: ParsedCsr;
  try {
    csr = parseCsr(req.csr);
  } catch (err) {
    throw badRequest("csr_malformed", "body is not a DER PKCS#10 certification request", err);
  }
  const uris = csr.requestedNames.filter((n) => n.type === "uri");
  if (uris.length !== 1) {
    throw badRequest("appliance_name_missing", `name the appliance in the CSR: one URI SAN ${namespace}`);
  }
  const wanted = parseApplianceSpiffeId(td, (uris[0] as { value: string }).value);
  if (!wanted || wanted.gateway !== gw) {
    throw forbidden("appliance_outside_namespace", `gateway ${gw} may enroll only ${namespace}`);
  }
  const deviceId = applianceId(gw, wanted.name);
  const existing = await deps.storage.getDevice(deviceId);
  if (existing && (existing.status === "revoked" || existing.status === "decommissioned")) {
    throw forbidden(
      "device_not_enrollable",
      `appliance ${deviceId} is ${existing.status}; an operator must reinstate it`,
    );
  }
  if (!existing) {
    const held = await deps.storage.countAppliances(gw);
    if (held >= gateway.maxAppliances) {
      throw forbidden(
        "appliance_quota_exceeded",
        `gateway ${gw} holds ${held} appliances, the most its profile allows (${gateway.maxAppliances}); revoke one first`,
      );
    }
  }
  return { profile, deviceId, existing, bindIdevid: false, gateway };
}
