import type { ParsedCsr } from "../../pki/csr.ts";
import { id_at_commonName } from "../../pki/oids.ts";
import { badRequest, forbidden } from "../errors.ts";

/**
 * The server decides the names in a certificate; a CSR may only ask for the names the
 * device would get anyway (architecture: "a CSR asks, policy answers"). The subject
 * may be empty or CN=<device id>; the SAN may be empty or the device's SPIFFE ID.
 */
export function checkRequestedNames(
  csr: ParsedCsr,
  deviceId: string,
  spiffe: string,
  limits: { maxRequestedNames: number },
): void {
  if (csr.requestedNames.length > limits.maxRequestedNames) {
    throw badRequest(
      "too_many_names",
      `CSR asks for ${csr.requestedNames.length} names; at most ${limits.maxRequestedNames}`,
    );
  }
  for (const attr of csr.subject) {
    if (attr.type !== id_at_commonName) continue;
    if (attr.value !== deviceId) {
      throw forbidden(
        "name_not_allowed",
        `CSR subject CN=${printable(attr.value)} is not this device; use CN=${deviceId} or an empty subject`,
      );
    }
  }
  for (const n of csr.requestedNames) {
    if (n.type === "uri" && n.value === spiffe) continue;
    throw forbidden(
      "name_not_allowed",
      `CSR asks for ${n.type.toUpperCase()}:${printable(n.value)}, which is not this device's name (${spiffe})`,
    );
  }
}

/** Names come from an attacker: keep them short and printable in messages. */
function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, "?");
  return clean.length > 80 ? `${clean.slice(0, 77)}...` : clean;
}
