/**
 * The inventory benchmark (part of `npm run bench`): the operator API's device list
 * over N devices (default 1,000,000), seeded straight into the SQLite file. It times
 * first pages, deep pages (a cursor near the end), filtered pages and a walk of
 * consecutive pages by nextCursor: keyset pagination should make them all cost the same.
 * Then, over the same fleet (a certificate and an MQTT status per enrolled device), one
 * full fleet audit and the /metrics scrape.
 */
import { randomInt } from "node:crypto";
import { rm } from "node:fs/promises";
import { Agent, request } from "node:https";
import { join } from "node:path";
import Database from "better-sqlite3";
import { dashboardBench } from "./dashboard.ts";
import { percentile } from "./load.ts";
import { benchWorkDir, cli, peakRssMiB, type ServerProcess, say, startServerProcess } from "./server.ts";

export interface InventoryBenchOptions {
  devices: number;
  keep: boolean;
}

const STATUSES = ["active", "active", "active", "active", "active", "active", "active", "active", "pending", "revoked"];

/**
 * Devices; for each enrolled one a certificate row (placeholder DER: nothing here parses
 * it) and an MQTT status row. A few are made findings on purpose: silent for two days,
 * reporting a serial never issued.
 */
function seedDevices(file: string, count: number, now: number): void {
  const db = new Database(file);
  try {
    const insert = db.prepare(
      "INSERT INTO devices (id, profile, status, created_at, updated_at, last_enrolled_at, current_serial, current_not_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    const cert = db.prepare(
      `INSERT INTO certificates (serial, device_id, profile, issuer, not_before, not_after, fingerprint, key_fingerprint,
        key_type, status, der, issued_at, method) VALUES (?, ?, ?, 'issuing-p256', ?, ?, ?, ?, 'P-256', ?, x'00', ?, 'token')`,
    );
    const status = db.prepare(
      `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, cert_serial, source)
       VALUES (?, 'online', 1, ?, ?, ?, 'device')`,
    );
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const state = STATUSES[i % STATUSES.length] as string;
        const enrolled = state === "pending" ? null : now - randomInt(72 * 3600) * 1000;
        const id = `inv-${String(i).padStart(7, "0")}`;
        const profile = i % 20 === 0 ? "legacy" : "device";
        const serial = i.toString(16).padStart(32, "0");
        insert.run(
          id,
          profile,
          state,
          now - 86400_000,
          now,
          enrolled,
          enrolled === null ? null : serial,
          enrolled === null ? null : enrolled + 72 * 3600_000,
        );
        if (enrolled === null) continue;
        cert.run(
          serial,
          id,
          profile,
          enrolled - 300_000,
          enrolled + 72 * 3600_000,
          `f${serial}`,
          `k${serial}`,
          state === "revoked" ? "revoked" : "valid",
          enrolled,
        );
        const seen = i % 1000 === 1 ? now - 2 * 86400_000 : now - randomInt(600) * 1000;
        status.run(id, seen, seen, i % 1000 === 3 ? "0badc0ffee" : serial);
      }
    })();
  } finally {
    db.close();
  }
}

/** One request with the operator token; the body text. */
function call(
  server: ServerProcess,
  agent: Agent,
  token: string,
  method: "GET" | "POST",
  path: string,
  body?: string,
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body ? { "content-type": "application/json", "content-length": String(body.length) } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => {
          text += c;
        });
        res.on("end", () =>
          res.statusCode === 200 ? resolve(text) : reject(new Error(`${path}: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** The cursor the API hands out for "after this device id" (bench shortcut to a deep page). */
const cursorAfter = (id: string) => Buffer.from(JSON.stringify({ id })).toString("base64url");

async function get(server: ServerProcess, agent: Agent, token: string, path: string) {
  const t0 = performance.now();
  const body = await new Promise<string>((resolve, reject) => {
    request(`${server.url}/api/v1${path}`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => {
        text += c;
      });
      res.on("end", () =>
        res.statusCode === 200 ? resolve(text) : reject(new Error(`${path}: ${res.statusCode} ${text}`)),
      );
    })
      .on("error", reject)
      .end();
  });
  return {
    ms: performance.now() - t0,
    page: JSON.parse(body) as { items: { id: string }[]; nextCursor: string | null },
  };
}

export async function inventoryBench(o: InventoryBenchOptions): Promise<string> {
  const work = await benchWorkDir("inventory-", o.keep);
  const dataDir = join(work, "data");
  say(`\ninventory benchmark: ${o.devices} devices`);
  const init = JSON.parse((await cli(["init", "--data", dataDir, "--json"])).stdout) as {
    adminToken: string;
  };
  const t0 = performance.now();
  seedDevices(join(dataDir, "edgeid.db"), o.devices, Date.now());
  say(`seeded ${o.devices} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const server = await startServerProcess(dataDir);
  const agent = new Agent({ keepAlive: true, ca: server.ca, maxSockets: 1 });
  const deep = `inv-${String(Math.floor(o.devices * 0.9)).padStart(7, "0")}`;
  const cases: [string, string][] = [
    ["first page, 100 devices", "/devices?limit=100"],
    [`deep page (after ${deep})`, `/devices?limit=100&cursor=${cursorAfter(deep)}`],
    ["status=revoked, first page", "/devices?status=revoked&limit=100"],
    ["status=revoked, deep page", `/devices?status=revoked&limit=100&cursor=${cursorAfter(deep)}`],
    ["profile=legacy, deep page", `/devices?profile=legacy&limit=100&cursor=${cursorAfter(deep)}`],
    ["expiringWithin=1h (by expiry)", "/devices?expiringWithin=1h&limit=100"],
    ["page of 1000", `/devices?limit=1000&cursor=${cursorAfter(deep)}`],
  ];
  const summary: string[] = [];
  for (const [name, path] of cases) {
    await get(server, agent, init.adminToken, path); // warm
    const times: number[] = [];
    let items = 0;
    for (let i = 0; i < 30; i++) {
      const r = await get(server, agent, init.adminToken, path);
      times.push(r.ms);
      items = r.page.items.length;
    }
    const sorted = Float64Array.from(times).sort();
    say(
      `  ${name}: ${items} items · p50 ${percentile(sorted, 50).toFixed(1)} ms · p99 ${percentile(sorted, 99).toFixed(1)} ms`,
    );
    summary.push(`${name} ${percentile(sorted, 50).toFixed(1)} ms`);
  }
  // Walk 200 consecutive pages from the middle by nextCursor.
  let cursor: string | null = cursorAfter(`inv-${String(Math.floor(o.devices / 2)).padStart(7, "0")}`);
  const walk: number[] = [];
  for (let i = 0; i < 200 && cursor; i++) {
    const r = await get(server, agent, init.adminToken, `/devices?limit=100&cursor=${cursor}`);
    walk.push(r.ms);
    cursor = r.page.nextCursor;
  }
  const w = Float64Array.from(walk).sort();
  say(
    `  walking ${walk.length} pages by nextCursor: p50 ${percentile(w, 50).toFixed(1)} ms · p99 ${percentile(w, 99).toFixed(1)} ms per page`,
  );
  const dashboard = await dashboardBench(server, agent, init.adminToken, {
    deep,
    sample: `inv-${String(Math.floor(o.devices / 3)).padStart(7, "0")}`,
  });
  // The fleet audit over the whole fleet (each check one bounded query), then /metrics.
  const audits: number[] = [];
  let counts: Record<string, number> = {};
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const report = JSON.parse(await call(server, agent, init.adminToken, "POST", "/api/v1/fleet/audit", "{}")) as {
      counts: Record<string, number>;
    };
    audits.push(performance.now() - t);
    counts = report.counts;
  }
  const a = Float64Array.from(audits).sort();
  // The server keeps answering while an audit runs (its full-table checks yield between chunks).
  const during: number[] = [];
  let auditDone = false;
  const running = call(
    server,
    new Agent({ keepAlive: true, ca: server.ca, maxSockets: 1 }),
    init.adminToken,
    "POST",
    "/api/v1/fleet/audit",
    "{}",
  ).then(() => {
    auditDone = true;
  });
  while (!auditDone) during.push((await get(server, agent, init.adminToken, "/devices?limit=100")).ms);
  await running;
  const d = Float64Array.from(during).sort();
  say(
    `  fleet audit over ${o.devices} devices: p50 ${percentile(a, 50).toFixed(0)} ms (3 runs) · findings ${Object.entries(
      counts,
    )
      .filter(([, n]) => n > 0)
      .map(([c, n]) => `${c} ${n}`)
      .join(", ")}`,
  );
  say(
    `  device pages during an audit: ${during.length} pages · p50 ${percentile(d, 50).toFixed(1)} ms · max ${(d.at(-1) ?? 0).toFixed(1)} ms`,
  );
  const t = performance.now();
  const text = await call(server, agent, init.adminToken, "GET", "/metrics");
  const scrape = performance.now() - t;
  const t2 = performance.now();
  await call(server, agent, init.adminToken, "GET", "/metrics");
  const cached = performance.now() - t2;
  say(
    `  /metrics: ${(text.length / 1024).toFixed(1)} KiB, first scrape ${scrape.toFixed(0)} ms (device counts and the expiry histogram over the table), cached ${cached.toFixed(1)} ms`,
  );
  say(`  server peak RSS: ${peakRssMiB(server.pid).toFixed(0)} MiB`);
  agent.destroy();
  await server.stop();
  if (!o.keep) await rm(work, { recursive: true, force: true });
  return `${o.devices} devices: ${summary.join(" · ")} · walk p50 ${percentile(w, 50).toFixed(1)} ms · fleet audit ${percentile(a, 50).toFixed(0)} ms · /metrics ${scrape.toFixed(0)} ms · dashboard: ${dashboard}`;
}
