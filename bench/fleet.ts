/**
 * The fleet-loop benchmark (part of `npm run bench`): N real devices (enrolled over
 * EST) connect to the server's embedded broker with their certificates; each publishes
 * M status reports. It measures connection admission (TLS + the live database check),
 * status ingestion end to end (publish → row in SQLite, read from the file by another
 * connection), and how long a revocation over the API takes to close the device's
 * live MQTT session.
 */
import { rm } from "node:fs/promises";
import { Agent } from "node:https";
import { join } from "node:path";
import Database from "better-sqlite3";
import { connect, type MqttClient } from "mqtt";
import { percentile, runLoad } from "./load.ts";
import { certificateFromResponse, certificatePem, makeRequest } from "./requests.ts";
import {
  basic,
  benchWorkDir,
  cli,
  cpuSeconds,
  createTokens,
  peakRssMiB,
  revokeOverApi,
  say,
  startServerProcess,
} from "./server.ts";

export interface FleetBenchOptions {
  devices: number;
  messages: number;
  revocations: number;
  keep: boolean;
}

const fmt = (sorted: Float64Array) =>
  `p50 ${percentile(sorted, 50).toFixed(1)} ms · p99 ${percentile(sorted, 99).toFixed(1)} ms · max ${(sorted.at(-1) ?? 0).toFixed(1)} ms`;

export async function fleetBench(o: FleetBenchOptions): Promise<string> {
  const work = await benchWorkDir("fleet-", o.keep);
  const dataDir = join(work, "data");
  say(`\nfleet loop benchmark: ${o.devices} devices on the embedded broker, ${o.messages} status reports each`);
  const init = JSON.parse((await cli(["init", "--data", dataDir, "--json"])).stdout) as {
    adminToken: string;
  };
  const tokens = await createTokens(dataDir, o.devices, "fl-");
  const requests = tokens.map((t) => makeRequest(t.deviceId));
  const server = await startServerProcess(dataDir);
  const enrolled = await runLoad(
    requests.map((r, i) => ({ headers: basic(tokens[i] as (typeof tokens)[number]), body: r.body })),
    { url: `${server.url}/.well-known/est/simpleenroll`, ca: server.ca, concurrency: 32, seconds: 600 },
  );
  const identities = enrolled.outcomes.map((out, i) => {
    if (out?.status !== 200) throw new Error(`enrollment ${i} answered ${out?.status}`);
    const req = requests[i] as (typeof requests)[number];
    return {
      deviceId: req.deviceId,
      cert: certificatePem(certificateFromResponse(out.body)),
      key: req.key.export({ type: "pkcs8", format: "pem" }) as string,
    };
  });

  // Admission: every device connects (TLS handshake, certificate looked up in the database).
  const clients = new Map<string, MqttClient>();
  const connectTimes: number[] = [];
  const cpu0 = cpuSeconds(server.pid);
  const tConnect = performance.now();
  const CONNECT_PARALLEL = 32;
  for (let i = 0; i < identities.length; i += CONNECT_PARALLEL) {
    await Promise.all(
      identities.slice(i, i + CONNECT_PARALLEL).map(
        (id) =>
          new Promise<void>((resolve, reject) => {
            const t0 = performance.now();
            const c = connect(server.mqttUrl, {
              clientId: id.deviceId,
              cert: id.cert,
              key: id.key,
              ca: server.ca,
              reconnectPeriod: 0,
              clean: true,
            });
            c.once("connect", () => {
              connectTimes.push(performance.now() - t0);
              clients.set(id.deviceId, c);
              resolve();
            });
            c.once("error", reject);
          }),
      ),
    );
  }
  const connectSeconds = (performance.now() - tConnect) / 1000;
  const connectCpu = (cpuSeconds(server.pid) - cpu0) / connectSeconds;
  const connects = Float64Array.from(connectTimes).sort();
  say(
    `  admission: ${o.devices} devices connected in ${connectSeconds.toFixed(2)} s (${(o.devices / connectSeconds).toFixed(0)}/s, ${CONNECT_PARALLEL} at a time) · per connection ${fmt(connects)} · server CPU ${(connectCpu * 100).toFixed(0)} %`,
  );

  // Ingestion: every device publishes M statuses (sessions 1..M) as fast as the broker acks them.
  const db = new Database(join(dataDir, "edgeid.db"), { readonly: true });
  const done = db.prepare("SELECT count(*) AS n FROM device_status WHERE session = ?");
  const total = o.devices * o.messages;
  const cpu1 = cpuSeconds(server.pid);
  const t1 = performance.now();
  let acked = 0;
  let ackedAt = 0;
  await Promise.all(
    [...clients].map(async ([deviceId, c]) => {
      for (let s = 1; s <= o.messages; s++) {
        const doc = { v: 1, state: "online", session: s, ts: new Date().toISOString(), agent: { version: "bench" } };
        await new Promise<void>((resolve, reject) =>
          c.publish(`edgeid/v1/devices/${deviceId}/status`, JSON.stringify(doc), { qos: 1, retain: true }, (err) =>
            err ? reject(err) : resolve(),
          ),
        );
        acked++;
      }
      ackedAt = performance.now();
    }),
  );
  const ackSeconds = (ackedAt - t1) / 1000;
  while ((done.get(o.messages) as { n: number }).n < o.devices) await new Promise((r) => setTimeout(r, 20));
  const ingestSeconds = (performance.now() - t1) / 1000;
  const ingestCpu = (cpuSeconds(server.pid) - cpu1) / ingestSeconds;
  db.close();
  say(
    `  ingestion: ${total} status reports (QoS 1, retained) acked in ${ackSeconds.toFixed(2)} s, all in SQLite after ${ingestSeconds.toFixed(2)} s → ${(total / ingestSeconds).toFixed(0)} reports/s end to end · server CPU ${(ingestCpu * 100).toFixed(0)} %`,
  );
  if (acked !== total) throw new Error(`only ${acked} of ${total} reports were acked`);

  // Revocation → the device's live session closed.
  const agent = new Agent({ keepAlive: true, ca: server.ca, maxSockets: 1 });
  const kicks: number[] = [];
  const victims = identities.slice(0, Math.min(o.revocations, identities.length));
  for (const v of victims) {
    const c = clients.get(v.deviceId) as MqttClient;
    const closed = new Promise<number>((r) => c.once("close", () => r(performance.now())));
    const t0 = performance.now();
    const status = await revokeOverApi(server, agent, init.adminToken, v.deviceId);
    if (status !== 200) throw new Error(`revoking ${v.deviceId}: ${status}`);
    kicks.push((await closed) - t0);
  }
  agent.destroy();
  const k = Float64Array.from(kicks).sort();
  say(
    `  revocation → live session closed (API call to the client's close, ${kicks.length} devices; includes the 250 ms the device gets to receive cmd/revoked): ${fmt(k)}`,
  );
  const rss = peakRssMiB(server.pid);
  say(`  server peak RSS with ${o.devices} connections: ${rss.toFixed(0)} MiB`);
  await Promise.all([...clients.values()].map((c) => new Promise<void>((r) => c.end(true, {}, () => r()))));
  await server.stop();
  if (!o.keep) await rm(work, { recursive: true, force: true });
  return (
    `${o.devices} devices: admission ${(o.devices / connectSeconds).toFixed(0)}/s · ingestion ${(total / ingestSeconds).toFixed(0)} reports/s` +
    ` · revocation kick p50 ${percentile(k, 50).toFixed(0)} ms max ${(k.at(-1) ?? 0).toFixed(0)} ms`
  );
}
