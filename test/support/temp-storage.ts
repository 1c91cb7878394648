/**
 * A SqliteStorage on a file of its own, in a fresh temporary directory, for the tests of
 * the storage adapter. `closeTempStorages()` (in afterEach) closes each one opened
 * since the last call (closing twice is harmless) and removes its directory.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStorage } from "../../server/adapters/storage/sqlite-storage.ts";

let opened: { storage: SqliteStorage; dir: string }[] = [];

export function openTempStorage(writer: "inline" | "thread"): { storage: SqliteStorage; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "edgeid-storage-"));
  const file = join(dir, "edgeid.db");
  const storage = SqliteStorage.open(file, { writer });
  opened.push({ storage, dir });
  return { storage, file };
}

export async function closeTempStorages(): Promise<void> {
  const all = opened;
  opened = [];
  for (const { storage, dir } of all) {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
