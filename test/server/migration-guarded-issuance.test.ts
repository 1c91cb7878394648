/**
 * Migration 0008 (guarded issuance) on a database written before it: the devices and
 * certificates already there keep working — a certificate issued before renews, its
 * status is unchanged — and one key, one identity now holds for the keys they carry
 * (device_keys is filled from the certificates, the first holder keeps a key, and the
 * rows are marked as sent so that other spellings are looked up).
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { afterEach, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR } from "../../server/adapters/storage/sqlite-storage.ts";
import {
  createToken,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  makeTestCa,
  peer,
  refusal,
} from "../support/fixtures.ts";

/** The migrations up to and including `last`, in a folder of their own. */
function migrationsUpTo(dir: string, last: number): string {
  const out = join(dir, "migrations-before");
  mkdirSync(join(out, "meta"), { recursive: true });
  const journal = JSON.parse(readFileSync(join(MIGRATIONS_DIR, "meta", "_journal.json"), "utf8")) as {
    entries: { idx: number; tag: string }[];
  };
  journal.entries = journal.entries.filter((e) => e.idx <= last);
  writeFileSync(join(out, "meta", "_journal.json"), JSON.stringify(journal));
  for (const f of readdirSync(MIGRATIONS_DIR)) {
    if (journal.entries.some((e) => `${e.tag}.sql` === f)) copyFileSync(join(MIGRATIONS_DIR, f), join(out, f));
  }
  return out;
}

/** A row as stored, without the columns migration 0008 (and later ones: 0010's protocols, 0011's workload columns) added. */
function before0008(row: Record<string, unknown>): Record<string, unknown> {
  const {
    revision: _r,
    first_used_at: _f,
    enrollment_protocol: _e,
    protocol: _p,
    workload_entry_id: _w,
    spiffe_id: _s,
    ...rest
  } = row;
  return rest;
}

function insert(db: Database.Database, table: string, row: Record<string, unknown>): void {
  const columns = Object.keys(row);
  db.prepare(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`).run(
    ...columns.map((c) => row[c]),
  );
}

describe("migration 0008 on a database from before it", () => {
  const open: Harness[] = [];
  afterEach(async () => {
    for (const h of open.splice(0)) await h.close();
  });

  it("keeps issued certificates working and fills device_keys from them", async () => {
    const ca = await makeTestCa();
    // Certificates issued by the same CA, read back as rows.
    const source = await harness({ ca });
    open.push(source);
    const keys = await generateKeys("P-256");
    const issued = await source.authority.enroll({
      csr: await makeCsr(keys),
      credentials: { type: "basic", username: "dev-old", password: await createToken(source, "dev-old") },
      peer: peer(),
    });
    const rows = (table: string, id: string, column = "id") =>
      source.storage.sqlite.prepare(`SELECT * FROM ${table} WHERE ${column} = ?`).all(id) as Record<string, unknown>[];
    const device = rows("devices", "dev-old")[0] as Record<string, unknown>;
    const certificate = rows("certificates", "dev-old", "device_id")[0] as Record<string, unknown>;

    const upgraded = await harness({
      ca,
      beforeOpen: (file) => {
        // The schema as of migration 0007, with the rows a server of that version wrote:
        // dev-old, and a later certificate of dev-twin for the same key (the old race).
        const db = new Database(file);
        migrate(drizzle({ client: db }), { migrationsFolder: migrationsUpTo(source.dir, 7) });
        insert(db, "devices", before0008(device));
        insert(db, "certificates", before0008(certificate));
        insert(db, "devices", { ...before0008(device), id: "dev-twin" });
        insert(db, "certificates", {
          ...before0008(certificate),
          serial: "7e57",
          device_id: "dev-twin",
          fingerprint: "00".repeat(32),
          bootstrap_token_id: null,
          issued_at: (certificate.issued_at as number) + 1000,
        });
        db.close();
      },
    });
    open.push(upgraded);

    expect((await upgraded.storage.getDevice("dev-old"))?.revision).toBe(0);
    expect((await upgraded.storage.getCertificateStatus(issued.serial))?.status).toBe("valid");
    // The key belongs to its first holder, copied as sent.
    const keyRows = upgraded.storage.sqlite
      .prepare("SELECT key_fingerprint, device_id, as_sent FROM device_keys ORDER BY device_id")
      .all();
    expect(keyRows).toEqual([{ key_fingerprint: certificate.key_fingerprint, device_id: "dev-old", as_sent: 1 }]);
    expect(await upgraded.storage.hasKeysAsSent()).toBe(true);

    // The certificate issued before the migration renews; the new one is guarded as usual.
    const renewed = await upgraded.authority.reenroll({
      csr: await makeCsr(await generateKeys("P-256")),
      peer: peer([issued.certificate]),
    });
    expect((await upgraded.storage.getDevice("dev-old"))?.currentSerial).toBe(renewed.serial);
    expect((await upgraded.storage.getCertificate(issued.serial))?.firstUsedAt).not.toBeNull();
    // Another device cannot enroll the key dev-old was certified for before the migration.
    expect(
      await refusal(
        upgraded.authority.enroll({
          csr: await makeCsr(keys),
          credentials: { type: "basic", username: "dev-new", password: await createToken(upgraded, "dev-new") },
          peer: peer(),
        }),
      ),
    ).toEqual({ code: "forbidden", reason: "key_in_use" });
  });
});
