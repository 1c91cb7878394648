import type { Actor } from "../actor.ts";
import { caFor } from "../deps.ts";
import { getCertificate } from "../inventory.ts";
import { decodeCsrText, type IssueOptions, issueWithGeneratedKey, signForDevice } from "../operator-issue.ts";
import { resolveProfile } from "../profiles.ts";
import { type RevocationReason, revokeCertificate } from "../revoke.ts";
import type { Door } from "./door.ts";

export interface SignRequest extends IssueOptions {
  profile: string;
  /** The device's CSR, PEM or base64 DER; without it the server makes the key. */
  csr?: string;
}

/** Certificates by serial, and issuance for appliances with no EST client. */
export class Certificates {
  constructor(private readonly door: Door) {}

  show(actor: Actor, serial: string) {
    return this.door.run(actor, "certificate.show", null, () => getCertificate(this.door.deps, actor, serial));
  }

  /** Revokes one certificate; the device keeps its status. */
  revoke(actor: Actor, serial: string, reason: RevocationReason) {
    return this.door.run(actor, "certificate.revoke", null, () =>
      revokeCertificate(this.door.deps, { serial, reason, actor }),
    );
  }

  /** Signs the device's CSR, or makes its key (returned once); with the chain up to the root. */
  sign(actor: Actor, deviceId: string, req: SignRequest) {
    const deps = this.door.deps;
    return this.door.run(actor, "certificate.sign", deviceId, async () => {
      const options = { deviceId, profile: req.profile, names: req.names, validity: req.validity };
      const issued =
        req.csr === undefined
          ? await issueWithGeneratedKey(deps, actor, options)
          : await signForDevice(deps, actor, { ...options, csr: decodeCsrText(req.csr) });
      return { issued, chain: caFor(deps, resolveProfile(deps, req.profile)).chain };
    });
  }
}
