import { toHex } from "../pki/der.ts";
import type { AuditChainRow } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import type { AuthorityDeps } from "./deps.ts";

const utf8 = new TextEncoder();

/**
 * The hash of one audit record: SHA-256 (hex) of the JSON array [prevHash, at,
 * actor, action, outcome, deviceId, serial, remote, detail] over the stored values.
 * The SQLite adapter computes the same function inside the appending transaction
 * (sqlite-batch.mjs auditHash); this one checks it.
 */
export async function auditRecordHash(deps: Pick<AuthorityDeps, "digest">, row: AuditChainRow): Promise<string> {
  const fields = [
    row.prevHash ?? "",
    row.at,
    row.actor,
    row.action,
    row.outcome,
    row.deviceId,
    row.serial,
    row.remote,
    row.detail,
  ];
  return toHex(await deps.digest("SHA-256", utf8.encode(JSON.stringify(fields))));
}

export interface ChainReport {
  ok: boolean;
  /** Records checked. */
  records: number;
  /** Hash of the newest record: write it down elsewhere to detect a truncated log later. */
  head: string | null;
  lastId: number | null;
  /** The first record that does not fit the chain. */
  broken?: { id: number; problem: string };
}

const PAGE = 5000;

/**
 * Walks the whole log in id order: every record must carry the hash of the one before
 * it and a hash of its own content. An edited record fails its own hash; a removed or
 * reordered one breaks the link of the next. (Removing the newest records leaves a
 * shorter valid chain: compare `head` with a copy kept elsewhere.)
 */
export async function verifyAuditChain(
  deps: Pick<AuthorityDeps, "storage" | "digest">,
  actor: Actor,
  /** Called after each page of records; a server passes a yield to its event loop here. */
  afterPage?: (records: number) => Promise<void> | void,
): Promise<ChainReport> {
  requireRole(actor, "auditor");
  let prev = "";
  let records = 0;
  let lastId: number | null = null;
  for (let after = 0; ; ) {
    const rows = await deps.storage.auditChain(after, PAGE);
    for (const row of rows) {
      records++;
      const fail = (problem: string): ChainReport => ({
        ok: false,
        records,
        head: prev || null,
        lastId,
        broken: { id: row.id, problem },
      });
      if (!row.hash) return fail("record is not sealed (no hash)");
      if ((row.prevHash ?? "") !== prev) {
        return fail(
          "link broken: prev_hash is not the hash of the record before (a record was removed, inserted or reordered)",
        );
      }
      if ((await auditRecordHash(deps, row)) !== row.hash) {
        return fail("content changed: the record does not match its hash");
      }
      prev = row.hash;
      lastId = row.id;
    }
    if (rows.length < PAGE) break;
    await afterPage?.(records);
    after = rows[rows.length - 1]?.id ?? after;
  }
  return { ok: true, records, head: prev || null, lastId };
}
