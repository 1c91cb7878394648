/**
 * The writer thread's checkpoints run on a thread of their own (sqlite-checkpointer.mjs):
 * committed WAL pages reach the database file without a COMMIT waiting for them. What
 * the test reads is SQLite's own shared-memory WAL index (the `-shm` file): the frames
 * in the WAL (mxFrame, in the index header) and how many of them a checkpoint has copied
 * into the database file (nBackfill, in the checkpoint information after the header).
 */
import { existsSync, readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { SqliteStorage } from "../../server/adapters/storage/sqlite-storage.ts";
import type { Write } from "../../server/ports/storage.ts";
import { deviceRecord, insertToken, upsertDevice } from "../support/storage-records.ts";
import { closeTempStorages, openTempStorage } from "../support/temp-storage.ts";

afterEach(closeTempStorages);

/** mxFrame and nBackfill from the WAL index (wal.c: two 48-byte headers, then the checkpoint information). */
function walIndex(file: string): { frames: number; backfilled: number } {
  const shm = readFileSync(`${file}-shm`);
  return { frames: shm.readUInt32LE(16), backfilled: shm.readUInt32LE(96) };
}

/** A device and its token: a few pages of five b-trees. */
function enrollment(i: number): Write[] {
  const id = `dev-${((i * 7919) % 10_007).toString().padStart(5, "0")}`;
  return [upsertDevice(deviceRecord(id)), insertToken(`tok-${id}`, id)];
}

/** `count` write sets from `from` on, in group commits of `perCommit` sets (applied in the same turn). */
async function enroll(s: SqliteStorage, from: number, count: number, perCommit: number): Promise<void> {
  for (let at = from; at < from + count; at += perCommit) {
    const sets = Array.from({ length: Math.min(perCommit, from + count - at) }, (_, k) => enrollment(at + k));
    await Promise.all(sets.map((set) => s.apply(set)));
  }
}

describe("SQLite checkpointer thread", () => {
  it("copies committed pages into the database file after 100 write sets, far below SQLite's 1,000-page checkpoint", async () => {
    const { storage: s, file } = openTempStorage("thread");
    // 99 sets: the checkpointer has not been asked yet, and no COMMIT checkpointed.
    await enroll(s, 0, 99, 33);
    const before = walIndex(file);
    expect(before.frames).toBeGreaterThan(0);
    expect(before.frames).toBeLessThan(1_000);
    expect(before.backfilled).toBe(0);
    // The 100th set: the writer asks, and the checkpointer copies every frame committed by then.
    await enroll(s, 99, 1, 1);
    const after = walIndex(file);
    await expect.poll(() => walIndex(file).backfilled, { timeout: 10_000 }).toBe(after.frames);
    // Readers see the same rows, and the file is sound.
    expect(await s.getDevice("dev-00000")).toMatchObject({ status: "pending" });
    expect(s.sqlite.prepare("SELECT count(*) FROM devices").pluck().get()).toBe(100);
    expect(s.sqlite.pragma("integrity_check", { simple: true })).toBe("ok");
  });

  it("closes while it checkpoints: every committed set is in the file, which is sound", async () => {
    const { storage: s, file } = openTempStorage("thread");
    // 300 sets ask for three checkpoints; the storage closes right after the last commit.
    await enroll(s, 0, 300, 60);
    await s.close();
    // The last connection to close checkpointed the rest and removed the WAL.
    expect(existsSync(`${file}-wal`)).toBe(false);
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare("SELECT count(*) FROM devices").pluck().get()).toBe(300);
      expect(db.prepare("SELECT count(*) FROM bootstrap_tokens").pluck().get()).toBe(300);
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    } finally {
      db.close();
    }
  });
});
