/**
 * The SQLite adapter's group commit: write sets applied in the same event-loop turn
 * share one transaction, yet each is all-or-nothing and settled on its own.
 */
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStorage } from "../../server/adapters/storage/sqlite-storage.ts";
import { StorageConflictError, type Write } from "../../server/ports/storage.ts";
import { deviceRecord, insertToken, upsertDevice } from "../support/storage-records.ts";
import { closeTempStorages, openTempStorage as open } from "../support/temp-storage.ts";

afterEach(closeTempStorages);

const device = (id: string): Write => upsertDevice(deviceRecord(id));
const token = insertToken;

describe.each(["inline", "thread"] as const)("SQLite group commit, writer %s", (writer) => {
  it("fails only the conflicting set of a batch, and leaves nothing of it behind", async () => {
    const { storage: s } = open(writer);
    await s.apply([device("a"), token("tok-a", "a")]);
    // Three sets in one turn; the middle one reuses tok-a's id after adding device b.
    const results = await Promise.allSettled([
      s.apply([device("c"), token("tok-c", "c")]),
      s.apply([device("b"), token("tok-a", "b")]),
      s.apply([device("d"), token("tok-d", "d")]),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    const reason = (results[1] as PromiseRejectedResult).reason;
    expect(reason).toBeInstanceOf(StorageConflictError);
    expect((reason as StorageConflictError).constraint).toContain("bootstrap_tokens");
    expect(await s.getDevice("b")).toBeUndefined();
    expect(await s.getDevice("c")).toMatchObject({ id: "c" });
    expect(await s.getDevice("d")).toMatchObject({ id: "d" });
    expect((await s.listTokens("d")).map((t) => t.id)).toEqual(["tok-d"]);
  });

  it("commits a batch once, durably, for a second connection to read", async () => {
    const { storage: s, file } = open(writer);
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.apply([device(`dev-${i}`), token(`tok-${i}`, `dev-${i}`)])),
    );
    const other = new Database(file, { readonly: true });
    try {
      expect(other.prepare("select count(*) from devices").pluck().get()).toBe(50);
      expect(other.prepare("select count(*) from bootstrap_tokens").pluck().get()).toBe(50);
    } finally {
      other.close();
    }
  });

  it("writes what is pending before it closes", async () => {
    const { storage: s, file } = open(writer);
    const pending = s.apply([device("late")]);
    const closed = s.close();
    await expect(s.apply([device("too-late")])).rejects.toThrow(/closed/);
    await pending;
    await closed;
    const other = new Database(file, { readonly: true });
    try {
      expect(other.prepare("select id from devices").pluck().all()).toEqual(["late"]);
    } finally {
      other.close();
    }
  });
});

describe("SQLite writer thread", () => {
  it("fails writes, instead of hanging, once the writer thread is gone", async () => {
    const { storage: s } = open("thread");
    await s.apply([device("before")]);
    const writer = (s as unknown as { writer: { terminate(): Promise<number> } }).writer;
    await writer.terminate();
    await expect(s.apply([device("after")])).rejects.toThrow(/writer thread exited/);
    expect(await s.getDevice("before")).toMatchObject({ id: "before" });
    expect(await s.getDevice("after")).toBeUndefined();
  });
});

describe("SQLite writer thread, lines of other event loops", () => {
  /** A loop's storage on its own line to the main storage's writer thread. */
  const remote = (main: SqliteStorage, file: string) =>
    SqliteStorage.open(file, {
      writer: {
        apply: () => Promise.reject(new Error("not through the main thread")),
        nextCrlNumber: () => Promise.reject(new Error("not used")),
        port: main.connectWriter(),
      },
    });

  it("commits every line's sets, each on its own, and answers each line for its own", async () => {
    const { storage: main, file } = open("thread");
    const [left, right] = [remote(main, file), remote(main, file)];
    try {
      await main.apply([device("a"), token("tok-a", "a")]);
      // Sets from three lines in the same turn; one reuses tok-a's id.
      const results = await Promise.allSettled([
        left.apply([device("l1"), token("tok-l1", "l1")]),
        right.apply([device("r1"), token("tok-a", "r1")]),
        main.apply([device("m1"), token("tok-m1", "m1")]),
        right.apply([device("r2"), token("tok-r2", "r2")]),
        left.apply([device("l2"), token("tok-l2", "l2")]),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
      const reason = (results[1] as PromiseRejectedResult).reason as StorageConflictError;
      expect(reason).toBeInstanceOf(StorageConflictError);
      expect(reason.constraint).toContain("bootstrap_tokens");
      for (const id of ["l1", "m1", "r2", "l2"]) expect(await main.getDevice(id)).toMatchObject({ id });
      expect(await main.getDevice("r1")).toBeUndefined();
      // A loop reads what it wrote, on its own connection.
      expect(await left.getDevice("r2")).toMatchObject({ id: "r2" });
    } finally {
      await Promise.all([left.close(), right.close()]);
    }
    // A loop that closed its line leaves the writer to the others.
    await main.apply([device("after")]);
    expect(await main.getDevice("after")).toMatchObject({ id: "after" });
  });

  it("fails a loop's writes once the writer thread is gone", async () => {
    const { storage: main, file } = open("thread");
    const loop = remote(main, file);
    try {
      await loop.apply([device("before")]);
      await (main as unknown as { writer: { terminate(): Promise<number> } }).writer.terminate();
      await expect(loop.apply([device("after")])).rejects.toThrow(/writer thread closed/);
    } finally {
      await loop.close();
    }
  });
});
