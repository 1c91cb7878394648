/**
 * The revocation benchmark (part of `npm run bench`): the cost of one revocation with
 * none and with N (default 100,000) certificates already revoked, CRL regeneration
 * time and size, how soon a revocation is in the served CRL, and OCSP responses/s
 * with and without a nonce — against the real server process and its SQLite file.
 *
 * The N revoked certificates are seeded straight into the database (a device, a
 * certificate row and a revocation-feed row each, in one transaction): issuing and
 * revoking 100,000 real certificates would take minutes and measure enrollment again.
 * The CRL and OCSP use only their serials, dates and reasons. The devices revoked in
 * the measured steps are real: enrolled over EST, revoked over the operator API.
 */

import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Agent, request } from "node:https";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { nodeDigest } from "../server/adapters/node/node-digest.ts";
import { encodeOid, readChildren, readTlv, sequence, TAG, tlv, unsignedInteger } from "../server/pki/der.ts";
import { issuerHashes } from "../server/pki/ocsp.ts";
import { pemCertificates } from "../server/pki/pem.ts";
import { cpuBudget, describeBudget, OCSP_TARGET_RATE } from "./cpu-budget.ts";
import { type Job, percentile, runLoad } from "./load.ts";
import { bareHttps } from "./machine.ts";
import { certificateFromResponse, makeRequest } from "./requests.ts";
import {
  basic,
  benchWorkDir,
  cli,
  cpuSeconds,
  createTokens,
  logEntries,
  loopThreads,
  peakRssMiB,
  revokeOverApi,
  run,
  type ServerProcess,
  say,
  startServerProcess,
  summarize,
  threadCpu,
  threadUse,
} from "./server.ts";

export interface RevocationBenchOptions {
  /** Certificates revoked before the measured revocations. */
  revoked: number;
  /** Revocations measured in each phase. */
  samples: number;
  ocspDuration: number;
  ocspConcurrency: number;
  keep: boolean;
}

interface CrlLog {
  ca: string;
  crlNumber: string;
  entries: number;
  bytes: number;
  buildMs: number;
}

/** The P-256 issuing CA's CRLs in the server log (the benchmark's certificates are all its). */
function p256Crls<T = object>(log: string): (CrlLog & T)[] {
  return logEntries<CrlLog & T>(log, "published CRL").filter((c) => c.ca === "issuing-p256");
}

const SHA1 = sequence(encodeOid("1.3.14.3.2.26"), Uint8Array.of(TAG.NULL, 0));
const NONCE = encodeOid("1.3.6.1.5.5.7.48.1.2");

function ocspRequest(hashes: { name: Uint8Array; key: Uint8Array }, serialHex: string, nonce: boolean): string {
  const certId = sequence(
    SHA1,
    tlv(TAG.OCTET_STRING, hashes.name),
    tlv(TAG.OCTET_STRING, hashes.key),
    unsignedInteger(Buffer.from(serialHex, "hex")),
  );
  const ext = nonce
    ? [tlv(0xa2, sequence(sequence(NONCE, tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, randomBytes(16))))))]
    : [];
  return Buffer.from(sequence(sequence(sequence(sequence(certId)), ...ext))).toString("latin1");
}

/** Revokes devices one after another over the operator API; milliseconds per call. */
async function revokeEach(server: ServerProcess, token: string, ids: string[]): Promise<Float64Array> {
  const agent = new Agent({ keepAlive: true, ca: server.ca, maxSockets: 1 });
  const times: number[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    const status = await revokeOverApi(server, agent, token, id);
    times.push(performance.now() - t0);
    if (status !== 200) throw new Error(`revoking ${id} answered ${status}`);
  }
  agent.destroy();
  return Float64Array.from(times).sort();
}

async function fetchCrl(server: ServerProcess): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    request(`${server.url}/pki/crl/issuing-p256.crl`, { ca: server.ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks)));
    })
      .on("error", reject)
      .end();
  });
}

/** Seeds `count` revoked certificates (one device each) and their feed rows, in one transaction. */
function seedRevoked(dbFile: string, count: number, now: number): string[] {
  const db = new Database(dbFile);
  const serials: string[] = [];
  try {
    const device = db.prepare(
      "INSERT INTO devices (id, profile, status, created_at, updated_at, last_enrolled_at, current_serial, current_not_after) VALUES (?, 'device', 'revoked', ?, ?, ?, ?, ?)",
    );
    const cert = db.prepare(
      "INSERT INTO certificates (serial, device_id, profile, issuer, not_before, not_after, fingerprint, key_fingerprint, key_type, status, revoked_at, revocation_reason, der, issued_at, method) VALUES (?, ?, 'device', 'issuing-p256', ?, ?, ?, ?, 'P-256', 'revoked', ?, 1, x'00', ?, 'token')",
    );
    const feed = db.prepare(
      "INSERT INTO revocations (serial, issuer, device_id, revoked_at, reason, not_after) VALUES (?, 'issuing-p256', ?, ?, 1, ?)",
    );
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const bytes = randomBytes(16);
        bytes[0] = ((bytes[0] as number) & 0x7f) | 0x10;
        const serial = bytes.toString("hex");
        const id = `seed-${i}`;
        const issued = now - 3600_000;
        const notAfter = issued + 72 * 3600_000;
        const revokedAt = now - 60_000 + Math.floor((i / count) * 50_000);
        device.run(id, issued, revokedAt, issued, serial, notAfter);
        cert.run(
          serial,
          id,
          issued,
          notAfter,
          randomBytes(32).toString("hex"),
          randomBytes(32).toString("hex"),
          revokedAt,
          issued,
        );
        feed.run(serial, id, revokedAt, notAfter);
        serials.push(serial);
      }
    })();
  } finally {
    db.close();
  }
  return serials;
}

const fmt = (sorted: Float64Array) =>
  `p50 ${percentile(sorted, 50).toFixed(1)} ms · p99 ${percentile(sorted, 99).toFixed(1)} ms · max ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms`;

export async function revocationBench(o: RevocationBenchOptions): Promise<string> {
  const work = await benchWorkDir("revocation-", o.keep);
  const dataDir = join(work, "data");
  say(`\nrevocation benchmark: ${o.revoked} certificates already revoked, ${o.samples} revocations measured per phase`);
  const init = JSON.parse((await cli(["init", "--data", dataDir, "--json"])).stdout) as {
    adminToken: string;
  };
  // Real devices for the measured revocations and for OCSP "good" answers.
  const real = 2 * o.samples + 15 + 200;
  const tokens = await createTokens(dataDir, real, "rv-");
  const requests = tokens.map((t) => makeRequest(t.deviceId));
  let server = await startServerProcess(dataDir);
  const enrolled = await runLoad(
    requests.map((r, i) => ({ headers: basic(tokens[i] as (typeof tokens)[number]), body: r.body })),
    { url: `${server.url}/.well-known/est/simpleenroll`, ca: server.ca, concurrency: 32, seconds: 600 },
  );
  const serialOf = new Map<string, string>();
  enrolled.outcomes.forEach((out, i) => {
    if (out?.status !== 200) throw new Error(`enrollment ${i} answered ${out?.status}: ${out?.body}`);
    const der = certificateFromResponse(out.body);
    const id = tokens[i]?.deviceId as string;
    serialOf.set(id, readSerial(der));
  });
  const ids = tokens.map((t) => t.deviceId);
  const phaseA = ids.slice(0, o.samples);
  const phaseB = ids.slice(o.samples, 2 * o.samples);
  const lastOnes = ids.slice(2 * o.samples, 2 * o.samples + 10);
  const cliOnes = ids.slice(2 * o.samples + 10, 2 * o.samples + 15);
  const good = ids.slice(2 * o.samples + 15);

  const before = await revokeEach(server, init.adminToken, phaseA);
  say(`one revocation, ${phaseA.length} in a row over the API, 0 revoked before: ${fmt(before)}`);
  await server.stop();

  const t0 = performance.now();
  const seeded = seedRevoked(join(dataDir, "edgeid.db"), o.revoked, Date.now());
  say(`seeded ${o.revoked} revoked certificates in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const started = performance.now();
  server = await startServerProcess(dataDir);
  const startMs = performance.now() - started;
  const [first] = p256Crls(server.log());
  say(
    `server start with ${o.revoked + phaseA.length} revoked: ${startMs.toFixed(0)} ms to ready; first CRL ${first?.entries} entries, ${((first?.bytes ?? 0) / 1e6).toFixed(2)} MB, built and signed in ${first?.buildMs} ms`,
  );

  const builtBefore = p256Crls(server.log()).length;
  const after = await revokeEach(server, init.adminToken, phaseB);
  say(
    `one revocation, ${phaseB.length} in a row over the API, ${o.revoked + phaseA.length} revoked before: ${fmt(after)}`,
  );
  await new Promise((r) => setTimeout(r, 1500));
  const builds = p256Crls(server.log()).slice(builtBefore);
  const buildMs = Float64Array.from(builds.map((b) => b.buildMs)).sort();
  say(
    `CRL regeneration during those revocations: ${builds.length} builds (coalesced), ${fmt(buildMs)}; last CRL ${builds.at(-1)?.entries} entries, ${((builds.at(-1)?.bytes ?? 0) / 1e6).toFixed(2)} MB`,
  );

  // From the API call to a CRL that lists the serial, as a relying party would fetch it.
  // Also from the server's side: the revocation's commit time (revoked_at) to the log
  // time of the next CRL published, which excludes the client's own delays.
  const toCrl: number[] = [];
  const toPublished: number[] = [];
  let crl: Buffer = Buffer.alloc(0);
  const db = new Database(join(dataDir, "edgeid.db"), { readonly: true });
  const revokedAt = db.prepare("SELECT revoked_at FROM certificates WHERE serial = ?").pluck();
  for (const id of lastOnes) {
    const target = serialOf.get(id) as string;
    const published = p256Crls(server.log()).length;
    const tRevoke = performance.now();
    await revokeEach(server, init.adminToken, [id]);
    crl = await fetchCrl(server);
    while (!crlLists(crl, target) && performance.now() - tRevoke < 10_000) crl = await fetchCrl(server);
    toCrl.push(performance.now() - tRevoke);
    const next = p256Crls<{ time: number }>(server.log())[published];
    if (next) toPublished.push(next.time - (revokedAt.get(target) as number));
    await new Promise((r) => setTimeout(r, 200));
  }
  say(
    `revocation committed → next CRL published (server log): ${fmt(Float64Array.from(toPublished).sort())}; ` +
      `→ a CRL fetched in a loop lists the serial (${(crl.length / 1e6).toFixed(1)} MB each): ${fmt(Float64Array.from(toCrl).sort())}`,
  );
  // A revocation by another process (the CLI on the same database): from the CLI's exit
  // to the first OCSP answer that says revoked, polling every 20 ms.
  const issuingDer = pemCertificates(readFileSync(join(dataDir, "ca", "issuing-p256.pem"), "utf8"))[0] as Uint8Array;
  const sha1 = (await issuerHashes(issuingDer, nodeDigest))["SHA-1"];
  // Measured from the revocation's own timestamp (revoked_at, written by the CLI in
  // the committing transaction) to the wall-clock time of the first "revoked" answer.
  const viaCli: number[] = [];
  for (const id of cliOnes) {
    const serial = serialOf.get(id) as string;
    const body = Buffer.from(ocspRequest(sha1, serial, false), "latin1");
    // Each revocation at a random point of the server's 500 ms poll: started right after
    // the previous one was seen, they kept one phase (the CLI's start-up takes about as
    // long each time) and every sample came out near 500 ms, or every one near 0.
    await new Promise((r) => setTimeout(r, Math.random() * 500));
    const revoking = cli(["devices", "revoke", id, "--reason", "keyCompromise", "--data", dataDir]);
    const t = performance.now();
    while (!(await ocspSaysRevoked(server, body)) && performance.now() - t < 10_000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    viaCli.push(Date.now() - (revokedAt.get(serial) as number));
    await revoking;
  }
  db.close();
  say(
    `CLI revocation (another process; the server polls every 500 ms) → OCSP says revoked, from the commit: ${fmt(Float64Array.from(viaCli).sort())}`,
  );

  // Independent check of the big CRL: openssl parses and verifies it.
  const crlFile = join(work, "big.crl");
  writeFileSync(crlFile, crl);
  const chainFile = join(dataDir, "ca", "issuing-p256.pem");
  const verified = await run("openssl", ["crl", "-inform", "DER", "-in", crlFile, "-CAfile", chainFile, "-noout"]);
  say(`openssl crl: ${(verified.stderr || verified.stdout).trim()}`);

  // OCSP: a mix of seeded revoked serials and real good ones.
  const issuing = pemCertificates(readFileSync(join(dataDir, "ca", "issuing-p256.pem"), "utf8"))[0] as Uint8Array;
  const hashes = (await issuerHashes(issuing, nodeDigest))["SHA-1"];
  const serials = [...seeded, ...good.map((id) => serialOf.get(id) as string)];
  const ocspUrl = `${server.url}/pki/ocsp`;
  // Without a nonce each serial is asked once per run (a second ask would be a cache
  // hit); with one, every answer is signed, so the run goes through the serials again
  // and again for its whole duration (up to 20,000 answers a second).
  const jobs = (nonce: boolean): Job[] => {
    const asks = Math.ceil(o.ocspDuration * 20_000);
    return Array.from({ length: nonce ? asks : Math.min(asks, serials.length) }, (_, i) => ({
      headers: {},
      contentType: "application/ocsp-request",
      body: ocspRequest(hashes, serials[(i * 7919) % serials.length] as string, nonce),
    }));
  };
  const results: string[] = [];
  // The floor under every figure below: the same load generator against a bare
  // node:https server on the server's Node, answering as many bytes as an OCSP response.
  const sampleSize = (await ocspPost(server, Buffer.from(ocspRequest(hashes, serials[0] as string, true), "latin1")))
    .length;
  const bare = await bareHttps(work, jobs(true), {
    concurrency: o.ocspConcurrency,
    seconds: Math.min(5, o.ocspDuration),
    bytes: sampleSize,
  });
  say(
    `yardstick: a bare node:https server (one event loop, a fixed ${sampleSize}-byte answer, the same load generator):` +
      ` ${bare.rate.toFixed(0)}/s · ${bare.serverUs.toFixed(0)} µs of server CPU and` +
      ` ${bare.clientUs.toFixed(0)} µs of load generator CPU per request`,
  );
  // HTTPS first (the listener devices use), then plain HTTP: the public listener, whose
  // URL certificates carry in their AIA extension and where relying parties ask.
  const publicOcspUrl = `${server.publicHttp}/pki/ocsp`;
  for (const [label, short, nonce, url] of [
    ["OCSP, no nonce, each serial asked the first time (signed, then cached)", "OCSP first ask", false, ocspUrl],
    ["OCSP, no nonce, the same serials again (cached where the first run reached)", "OCSP again", false, ocspUrl],
    ["OCSP, with a nonce (signed every time)", "OCSP nonce", true, ocspUrl],
    [
      "OCSP over plain HTTP (the public listener, the URL in certificates), with a nonce",
      "OCSP nonce over HTTP",
      true,
      publicOcspUrl,
    ],
  ] as const) {
    {
      // The requests are built before the CPU counters are read: building them (a
      // nonce and a DER request each, for every answer the run could reach) is not
      // load generation; counted, it added 0.25-0.35 cores to the load generator's figure.
      const requests = jobs(nonce);
      const cpu0 = process.cpuUsage();
      const serverCpu0 = cpuSeconds(server.pid);
      const threads0 = threadCpu(server.pid);
      const r = await runLoad(requests, {
        url,
        ca: server.ca,
        concurrency: o.ocspConcurrency,
        seconds: o.ocspDuration,
      });
      const s = summarize(`${label} (concurrency ${o.ocspConcurrency})`, r);
      const client = process.cpuUsage(cpu0);
      const serverSeconds = cpuSeconds(server.pid) - serverCpu0;
      say(
        `  server ${(serverSeconds / r.seconds).toFixed(2)} cores,` +
          ` load generator ${((client.user + client.system) / 1e6 / r.seconds).toFixed(2)} cores`,
      );
      if (nonce) {
        const budget = cpuBudget({
          threads: threadUse(
            server.pid,
            threads0,
            threadCpu(server.pid),
            new Set(loopThreads(server.log(), server.pid).values()),
          ),
          serverSeconds,
          clientSeconds: (client.user + client.system) / 1e6,
          operations: s.ok,
          cores: availableParallelism(),
          targetRate: OCSP_TARGET_RATE,
        });
        for (const line of describeBudget(
          budget,
          "response",
          `the target (${OCSP_TARGET_RATE}/s)`,
          availableParallelism(),
        )) {
          say(line);
        }
      }
      results.push(`${short} ${s.rate.toFixed(0)}/s`);
      if (!nonce) {
        const sample = r.outcomes.find((x) => x?.status === 200);
        if (sample) writeFileSync(join(work, "sample.ocsp"), Buffer.from(sample.body, "latin1"));
      }
    }
  }
  const check = await run("openssl", [
    "ocsp",
    "-respin",
    join(work, "sample.ocsp"),
    "-issuer",
    chainFile,
    "-CAfile",
    join(dataDir, "ca", "root-ca.pem"),
    "-resp_text",
  ]).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? "", stderr: e.stderr ?? "" }));
  say(
    `openssl ocsp -respin (a sampled answer): ${/Cert Status: (\w+)/.exec(check.stdout)?.[1]} · ${(check.stderr || "").trim()}`,
  );
  say(`server peak RSS: ${peakRssMiB(server.pid).toFixed(0)} MiB`);
  await server.stop();
  if (!o.keep) await rm(work, { recursive: true, force: true });
  return (
    `revoke p50 ${percentile(before, 50).toFixed(1)} ms (0 revoked) vs ${percentile(after, 50).toFixed(1)} ms (${o.revoked} revoked)` +
    ` · CRL ${((builds.at(-1)?.bytes ?? 0) / 1e6).toFixed(2)} MB in ${percentile(buildMs, 50).toFixed(0)} ms · ${results.join(" · ")}`
  );
}

/** One OCSP POST over the server's HTTPS listener: the answer's bytes. */
async function ocspPost(server: ServerProcess, body: Buffer): Promise<Uint8Array> {
  const der = await new Promise<Buffer>((resolve, reject) => {
    const req = request(
      `${server.url}/pki/ocsp`,
      {
        method: "POST",
        ca: server.ca,
        headers: { "content-type": "application/ocsp-request", "content-length": String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks)));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
  return new Uint8Array(der);
}

/** One OCSP POST; true when its only SingleResponse is revoked ([1] in CertStatus). */
async function ocspSaysRevoked(server: ServerProcess, body: Buffer): Promise<boolean> {
  return singleStatusTag(await ocspPost(server, body)) === 0xa1;
}

/** The CertStatus tag of the first SingleResponse: 0x80 good, 0xa1 revoked, 0x82 unknown. */
function singleStatusTag(response: Uint8Array): number | undefined {
  const [, bytes] = readChildren(readTlv(response).content);
  if (!bytes) return undefined;
  const [, octets] = readChildren(readChildren(bytes.content)[0]?.content ?? new Uint8Array());
  const basic = readChildren(readTlv(octets?.content ?? new Uint8Array()).content);
  const data = readChildren(basic[0]?.content ?? new Uint8Array());
  // ResponseData: [0] version (absent), responderID, producedAt, responses, …
  const responses = data.find((el, i) => i > 0 && el.tag === TAG.SEQUENCE);
  const single = readChildren(readChildren(responses?.content ?? new Uint8Array())[0]?.content ?? new Uint8Array());
  return single[1]?.tag;
}

/** The serial of a certificate, as the inventory stores it (hex, no sign byte). */
function readSerial(der: Uint8Array): string {
  const hex = Buffer.from(der).toString("hex");
  // Certificate → TBSCertificate → [0] version → INTEGER serial; lengths are short here.
  const m = /a003020102(02)([0-9a-f]{2})/.exec(hex);
  if (!m) throw new Error("no serial");
  const len = Number.parseInt(m[2] as string, 16);
  const start = (m.index ?? 0) + m[0].length;
  return hex.slice(start, start + len * 2).replace(/^00/, "");
}

function crlLists(crl: Buffer, serialHex: string): boolean {
  return crl.includes(Buffer.from(serialHex.length % 2 ? `0${serialHex}` : serialHex, "hex"));
}
