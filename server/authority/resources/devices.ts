import { type Actor, requireRole } from "../actor.ts";
import { issueCommands } from "../commands.ts";
import { bindIdevid, decodeCertificateText } from "../idevid-binding.ts";
import { type DeviceListRequest, listDeviceEvents, listDevices, showDevice } from "../inventory.ts";
import { type MetadataChange, setDeviceMetadata } from "../lifecycle.ts";
import { type RevocationReason, reinstateDevice, revokeDevice } from "../revoke.ts";
import type { Door } from "./door.ts";

export interface DeviceRevocation {
  reason: RevocationReason;
  /** Retired rather than revoked (same effect, different status). */
  decommission?: boolean;
  /** A gateway: its appliances with it, in the same write set. */
  cascade?: boolean;
}

/** The device inventory and what operators do to one device. */
export class Devices {
  constructor(private readonly door: Door) {}

  list(actor: Actor, req: DeviceListRequest) {
    return this.door.run(actor, "device.list", null, () => listDevices(this.door.deps, actor, req));
  }

  show(actor: Actor, id: string) {
    return this.door.run(actor, "device.show", id, () => showDevice(this.door.deps, actor, id));
  }

  events(actor: Actor, id: string, req: { before?: number; limit?: number }) {
    return this.door.run(actor, "device.events", id, () => listDeviceEvents(this.door.deps, actor, id, req));
  }

  /** The device a revocation would be about, shown before it is confirmed: to a role that may revoke. */
  confirmRevoke(actor: Actor, id: string) {
    return this.door.run(actor, "device.revoke", id, () => {
      requireRole(actor, "operator");
      return showDevice(this.door.deps, actor, id);
    });
  }

  revoke(actor: Actor, id: string, r: DeviceRevocation) {
    return this.door.run(actor, "device.revoke", id, () =>
      revokeDevice(this.door.deps, {
        deviceId: id,
        reason: r.reason,
        status: r.decommission ? "decommissioned" : "revoked",
        cascade: r.cascade,
        actor,
      }),
    );
  }

  reinstate(actor: Actor, id: string, note?: string) {
    return this.door.run(actor, "device.reinstate", id, () =>
      reinstateDevice(this.door.deps, { deviceId: id, note, actor }),
    );
  }

  /** Owner and location: a string sets, null clears, absent keeps. */
  label(actor: Actor, id: string, change: MetadataChange) {
    return this.door.run(actor, "device.metadata", id, () => setDeviceMetadata(this.door.deps, actor, id, change));
  }

  /** Binds a manufacturer certificate (PEM chain or base64 DER) to the id before it enrolls with it. */
  bindIdevid(actor: Actor, id: string, req: { certificate: string; profile?: string }) {
    return this.door.run(actor, "device.bind-idevid", id, () =>
      bindIdevid(this.door.deps, actor, {
        deviceId: id,
        ...decodeCertificateText(req.certificate),
        ...(req.profile ? { profile: req.profile } : {}),
      }),
    );
  }

  /** Asks the device for a new key and certificate (a rotate command). */
  rotate(actor: Actor, id: string) {
    return this.door.run(actor, "command.create", id, () =>
      issueCommands(this.door.deps, actor, "rotate", { deviceId: id }),
    );
  }
}
