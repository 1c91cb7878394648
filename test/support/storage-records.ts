/**
 * Records for the storage adapter's tests: a device waiting for its first certificate
 * and an unused bootstrap token, at T0, as the writes that store them.
 */
import type { DeviceRecord, TokenRecord, Write } from "../../server/ports/storage.ts";
import { T0 } from "./fixtures.ts";

/** A pending device with no certificate yet; `over` changes any field. */
export function deviceRecord(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id,
    profile: "device",
    status: "pending",
    createdAt: T0,
    updatedAt: T0,
    lastEnrolledAt: null,
    currentSerial: null,
    currentNotAfter: null,
    ...over,
  };
}

/** The write that stores a device record. */
export const upsertDevice = (device: DeviceRecord): Write => ({ kind: "upsertDevice", device });

/** The write that stores an unused token `id` for `deviceId`, valid for an hour from T0. */
export function insertToken(id: string, deviceId: string): Write {
  const token: TokenRecord = {
    id,
    hash: `hash-of-${id}`,
    deviceId,
    profile: "device",
    createdAt: T0,
    expiresAt: new Date(T0.getTime() + 3600_000),
    usedAt: null,
    usedSerial: null,
    revokedAt: null,
    createdBy: "test",
  };
  return { kind: "insertToken", token };
}
