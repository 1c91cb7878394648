/**
 * What a device write costs on disk: the pages it puts in the WAL, read from the WAL
 * file's frame headers and named by SQLite's own dbstat table. SQLite rewrites the
 * entry of every index on a column an UPDATE sets, changed or not; with device ids
 * spread over the whole key space each such entry is a page of its own, so in a large
 * fleet a renewal that set every column wrote a page of every device index.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import type { SqliteStorage } from "../../server/adapters/storage/sqlite-storage.ts";
import type { DeviceRecord, Write } from "../../server/ports/storage.ts";
import { T0 } from "../support/fixtures.ts";
import { deviceRecord, upsertDevice } from "../support/storage-records.ts";
import { closeTempStorages, openTempStorage } from "../support/temp-storage.ts";

afterEach(closeTempStorages);

const FLEET = 4000;
/** Ids spread over the key space, as random device ids are: neighbours in the table are not neighbours in id order. */
const idOf = (i: number) => `dev-${((i * 7919) % FLEET).toString().padStart(5, "0")}-${i}`;
const at = (minutes: number) => new Date(T0.getTime() + minutes * 60_000);

const record = (i: number, over: Partial<DeviceRecord>): DeviceRecord => deviceRecord(idOf(i), over);
const upsert = upsertDevice;

/** A fleet of FLEET devices, the even ones active with a certificate, the odd ones waiting for their first. */
async function fleet(): Promise<{ storage: SqliteStorage; file: string }> {
  const { storage, file } = openTempStorage("inline");
  const writes: Write[] = [];
  for (let i = 0; i < FLEET; i++) {
    writes.push(
      upsert(
        i % 2 === 0
          ? record(i, { status: "active", currentSerial: `s-${i}`, currentNotAfter: at(i), lastEnrolledAt: T0 })
          : record(i, {}),
      ),
    );
  }
  await storage.apply(writes);
  return { storage, file };
}

/** The b-trees (tables and indexes) whose pages the writes put in the WAL. */
async function treesWritten(s: SqliteStorage, file: string, writes: Write[]): Promise<Map<string, number>> {
  s.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  await s.apply(writes);
  const wal = readFileSync(`${file}-wal`);
  const pageSize = wal.readUInt32BE(8);
  const pages = new Set<number>();
  for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) pages.add(wal.readUInt32BE(at));
  const owner = new Map(
    (s.sqlite.prepare("SELECT pageno, name FROM dbstat").all() as { pageno: number; name: string }[]).map((r) => [
      r.pageno,
      r.name,
    ]),
  );
  const trees = new Map<string, number>();
  for (const p of pages) {
    const name = owner.get(p) ?? "(free or header)";
    trees.set(name, (trees.get(name) ?? 0) + 1);
  }
  return trees;
}

/** 100 pending devices of the fleet, spread over it, take their first certificate in one write set. */
async function firstCertificates(): Promise<{
  storage: SqliteStorage;
  enrolled: number[];
  trees: Map<string, number>;
}> {
  const { storage, file } = await fleet();
  const enrolled = Array.from({ length: 100 }, (_, k) => 2 * k * 19 + 1);
  const trees = await treesWritten(
    storage,
    file,
    enrolled.map((i) =>
      upsert(record(i, { status: "active", currentSerial: `first-${i}`, currentNotAfter: at(FLEET + i) })),
    ),
  );
  return { storage, enrolled, trees };
}

const EXPIRY_INDEXES = ["devices_not_after_id", "devices_profile_not_after_id", "devices_status_not_after"];

describe("device writes on disk", () => {
  it("a renewal rewrites no page of the status or profile indexes, and still raises the revision once", async () => {
    const { storage: s, file } = await fleet();
    const renewed = Array.from({ length: 100 }, (_, k) => 2 * k * 19);
    const before = await s.getDevice(idOf(renewed[0] as number));
    const trees = await treesWritten(
      s,
      file,
      renewed.map((i) =>
        upsert(
          record(i, {
            status: "active",
            currentSerial: `renewed-${i}`,
            currentNotAfter: at(FLEET + i),
            lastEnrolledAt: at(1),
            updatedAt: at(1),
          }),
        ),
      ),
    );
    expect(trees.get("devices")).toBeGreaterThan(0);
    expect(trees.get("devices_not_after_id")).toBeGreaterThan(0);
    expect(trees.has("devices_status_id")).toBe(false);
    expect(trees.has("devices_profile_id")).toBe(false);
    const after = await s.getDevice(idOf(renewed[0] as number));
    expect(after).toMatchObject({ status: "active", profile: "device", currentSerial: `renewed-${renewed[0]}` });
    expect(after?.revision).toBe((before?.revision ?? -1) + 1);
  });

  it("a first certificate adds to the young end of the expiry indexes, which hold no pending device", async () => {
    const { storage: s, enrolled, trees } = await firstCertificates();
    // The young end: a few leaves and their parents. Were pending devices in these indexes
    // (filed by id under a NULL expiry), 100 devices spread over the ids would also delete
    // an entry each from pages all over them (17 pages of devices_not_after_id here).
    for (const index of EXPIRY_INDEXES) {
      expect(trees.get(index) ?? 0, index).toBeGreaterThan(0);
      expect(trees.get(index) ?? 0, index).toBeLessThanOrEqual(8);
    }
    // An index b-tree keeps an entry in every cell, interior pages included.
    const entries = (index: string) =>
      s.sqlite.prepare("SELECT sum(ncell) FROM dbstat WHERE name = ?").pluck().get(index);
    // The active half of the fleet and the 100 just enrolled; none of the pending ones.
    for (const index of EXPIRY_INDEXES) {
      expect(entries(index), index).toBe(FLEET / 2 + 100);
    }
    // A query by expiry still finds them, through the index.
    const soonest = await s.listDevices({ expiringBefore: at(FLEET + 10_000), limit: 5_000 });
    expect(soonest).toHaveLength(FLEET / 2 + 100);
    expect(soonest.at(-1)?.id).toBe(idOf(enrolled.at(-1) as number));
  });

  it("a first enrollment rewrites the status index but no page of the profile index", async () => {
    const { storage: s, enrolled, trees } = await firstCertificates();
    expect(trees.get("devices_status_id")).toBeGreaterThan(0);
    expect(trees.has("devices_profile_id")).toBe(false);
    const device = await s.getDevice(idOf(enrolled[0] as number));
    expect(device).toMatchObject({ status: "active", profile: "device", revision: 1 });
    // The index agrees with the row: the device is found among the active ones, not the pending.
    const status = s.sqlite
      .prepare("SELECT status FROM devices INDEXED BY devices_status_id WHERE status = 'active' AND id = ?")
      .pluck()
      .get(idOf(enrolled[0] as number));
    expect(status).toBe("active");
  });

  it("a change of profile or status is still written, once, and the indexes follow it", async () => {
    const { storage: s } = await fleet();
    const id = idOf(3);
    await s.apply([upsert(record(3, { profile: "gateway", status: "active", currentSerial: "g-3" }))]);
    expect(await s.getDevice(id)).toMatchObject({ profile: "gateway", status: "active", revision: 1 });
    const byProfile = s.sqlite
      .prepare("SELECT id FROM devices INDEXED BY devices_profile_id WHERE profile = 'gateway'")
      .pluck()
      .all();
    expect(byProfile).toEqual([id]);
    // A write that says the same profile and status changes neither, and raises the revision once more.
    await s.apply([upsert(record(3, { profile: "gateway", status: "active", currentSerial: "g-3b" }))]);
    expect(await s.getDevice(id)).toMatchObject({ profile: "gateway", status: "active", revision: 2 });
  });
});
