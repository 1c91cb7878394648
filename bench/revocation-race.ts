/**
 * The revocation race (part of `npm run bench`): a device's certificate renews from
 * several mutual-TLS connections at once while the operator revokes the device, round
 * after round, against the real server process and its SQLite file. A renewal's write
 * set re-checks inside the transaction that the device is unchanged and the presented
 * certificate valid, so a revocation that commits first wins: afterwards the audit
 * caller (its ids are in commit order) must show no certificate issued for the device
 * after its `device.revoke`, and no certificate of a revoked device may still be valid.
 * When the revocation starts varies by round (after 0…N renewal answers, then 0–3
 * event-loop turns), so that some renewals win and some lose.
 */
import { rm } from "node:fs/promises";
import { Agent } from "node:https";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import Database from "better-sqlite3";
import { type Outcome, runLoad } from "./load.ts";
import { makeRequest } from "./requests.ts";
import {
  benchWorkDir,
  cli,
  createTokens,
  type EnrolledDevice,
  enrollDevices,
  revokeOverApi,
  type ServerProcess,
  say,
  startServerProcess,
} from "./server.ts";

export interface RevocationRaceOptions {
  rounds: number;
  /** Concurrent renewals per round. */
  concurrency: number;
  keep: boolean;
}

const turn = () => new Promise<void>((r) => setImmediate(r));

/** `concurrency` renewals with the device's certificate, each on its own connection with a new key. */
function renewals(server: ServerProcess, device: EnrolledDevice, concurrency: number): Promise<Outcome>[] {
  const tls = createSecureContext({ ca: server.ca, cert: device.cert, key: device.key });
  const url = `${server.url}/.well-known/est/simplereenroll`;
  return Array.from({ length: concurrency }, async () => {
    // One job per load run: a mutual-TLS job gets a new connection (its own agent).
    const r = await runLoad([{ headers: {}, body: makeRequest(device.deviceId).body, tls }], {
      url,
      ca: server.ca,
      concurrency: 1,
      seconds: 60,
    });
    return r.outcomes[0] ?? { status: 0, body: "not sent", ms: 0 };
  });
}

/** Revokes over the API, again while a concurrent renewal's commit makes it answer 409; the retries. */
async function revokeUntilDone(server: ServerProcess, agent: Agent, token: string, id: string): Promise<number> {
  for (let retries = 0; retries < 20; retries++) {
    const status = await revokeOverApi(server, agent, token, id);
    if (status === 200) return retries;
    if (status !== 409) throw new Error(`revoking ${id} answered ${status}`);
  }
  throw new Error(`revoking ${id} answered 409 twenty times`);
}

interface RaceAudit {
  /** Devices without a successful device.revoke record. */
  unrevoked: number;
  /** est.simplereenroll successes committed after the device's revocation. */
  issuedAfter: number;
  /** est.simplereenroll successes in all (to compare with the 200 answers). */
  renewed: number;
  /** Certificates of revoked devices whose status is still 'valid'. */
  stillValid: number;
  /** Refused renewals by the reason the audit trail recorded. */
  reasons: Map<string, number>;
}

/** What the SQLite file says after the rounds (opened read-only, the server stopped). */
function auditRace(dbFile: string, ids: string[]): RaceAudit {
  const db = new Database(dbFile, { readonly: true });
  try {
    const revokeId = db
      .prepare(
        "SELECT min(id) FROM audit_events WHERE device_id = ? AND action = 'device.revoke' AND outcome = 'success'",
      )
      .pluck();
    const renewedAfter = db
      .prepare(
        "SELECT count(*) FROM audit_events WHERE device_id = ? AND action = 'est.simplereenroll' AND outcome = 'success' AND id > ?",
      )
      .pluck();
    const out: RaceAudit = { unrevoked: 0, issuedAfter: 0, renewed: 0, stillValid: 0, reasons: new Map() };
    for (const id of ids) {
      const at = revokeId.get(id) as number | null;
      if (at === null) out.unrevoked++;
      else out.issuedAfter += renewedAfter.get(id, at) as number;
      out.renewed += renewedAfter.get(id, 0) as number;
    }
    out.stillValid = db
      .prepare(
        "SELECT count(*) FROM certificates c JOIN devices d ON d.id = c.device_id WHERE d.status = 'revoked' AND c.status = 'valid'",
      )
      .pluck()
      .get() as number;
    const denials = db
      .prepare(
        "SELECT json_extract(detail, '$.reason') AS reason, count(*) AS n FROM audit_events WHERE action = 'est.simplereenroll' AND outcome <> 'success' GROUP BY reason ORDER BY n DESC",
      )
      .all() as { reason: string | null; n: number }[];
    for (const d of denials) out.reasons.set(d.reason ?? "?", d.n);
    return out;
  } finally {
    db.close();
  }
}

const tally = (m: Map<string, number>) => [...m].map(([k, v]) => `${k} ×${v}`).join(", ");

export async function revocationRaceBench(o: RevocationRaceOptions): Promise<string> {
  const work = await benchWorkDir("race-", o.keep);
  const dataDir = join(work, "data");
  say(`\nrevocation race: ${o.rounds} rounds, ${o.concurrency} concurrent renewals and one revocation each`);
  const init = JSON.parse((await cli(["init", "--data", dataDir, "--json"])).stdout) as {
    adminToken: string;
  };
  const tokens = await createTokens(dataDir, o.rounds, "race-");
  const server = await startServerProcess(dataDir);
  const agent = new Agent({ keepAlive: true, ca: server.ca, maxSockets: 1 });
  const statuses = new Map<string, number>();
  const messages = new Map<string, number>();
  let won = 0;
  let refused = 0;
  let retried = 0;
  /** Rounds in which the revocation committed before any renewal. */
  let revocationFirst = 0;
  let seconds = 0;
  try {
    for (let round = 0; round < o.rounds; round++) {
      // Enrolled outside the measured time: the race starts with a fresh, unused certificate.
      const [device] = await enrollDevices(server, [tokens[round] as (typeof tokens)[number]], 1);
      if (!device) throw new Error("no device enrolled");
      const afterAnswers = round % (o.concurrency + 1);
      const turns = Math.floor(round / (o.concurrency + 1)) % 4;
      const t0 = performance.now();
      let answered = 0;
      let wake: (() => void) | undefined;
      const racing = renewals(server, device, o.concurrency).map((p) =>
        p.then((out) => {
          answered++;
          wake?.();
          return out;
        }),
      );
      const revocation = (async () => {
        while (answered < afterAnswers) await new Promise<void>((r) => (wake = r));
        for (let i = 0; i < turns; i++) await turn();
        return revokeUntilDone(server, agent, init.adminToken, device.deviceId);
      })();
      const [outcomes, retries] = await Promise.all([Promise.all(racing), revocation]);
      seconds += (performance.now() - t0) / 1000;
      retried += retries;
      if (!outcomes.some((out) => out.status === 200)) revocationFirst++;
      for (const out of outcomes) {
        const key = out.status === 0 ? `network error: ${out.body}` : String(out.status);
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        if (out.status === 200) {
          won++;
          continue;
        }
        refused++;
        const text = `${out.status} ${out.body.trim().replaceAll(device.deviceId, "<device>")}`;
        messages.set(text, (messages.get(text) ?? 0) + 1);
      }
    }
  } finally {
    agent.destroy();
    await server.stop();
  }
  const audit = auditRace(
    join(dataDir, "edgeid.db"),
    tokens.map((t) => t.deviceId),
  );
  const refusals = tally(new Map([...statuses].filter(([k]) => k !== "200")));
  const line =
    `${o.rounds} rounds × ${o.concurrency} concurrent renewals: ${won} renewals won before the revocation, ` +
    `${refused} refused (${refusals || "none"}), ${audit.issuedAfter} certificates issued after a revocation committed, ` +
    `${audit.stillValid} certificates of revoked devices still valid · ${seconds.toFixed(1)} s`;
  say(`revocation race: ${line}`);
  say(`  refusals by reason (audit trail): ${tally(audit.reasons) || "none"}`);
  for (const [text, n] of [...messages].sort((a, b) => b[1] - a[1])) say(`  ×${n} ${text}`);
  say(
    `  rounds in which no renewal won: ${revocationFirst} of ${o.rounds} · revocations answered 409 and retried: ${retried} · renewals recorded in the audit trail ${audit.renewed} (answered 200: ${won})`,
  );
  if (!o.keep) await rm(work, { recursive: true, force: true });
  else say(`data directory kept: ${dataDir}`);
  if (audit.issuedAfter !== 0 || audit.stillValid !== 0 || audit.unrevoked !== 0) {
    throw new Error(
      `revocation race lost: ${audit.issuedAfter} certificates issued after a revocation committed, ` +
        `${audit.stillValid} certificates of revoked devices still valid, ${audit.unrevoked} devices without a revocation record`,
    );
  }
  return line;
}
