/**
 * The HTTPS listener's own limits, against a real `edgeid serve` configured with small
 * ones (limits.http): connections beyond the maximum are closed, an oversized header
 * block gets 431, a client that never completes its TLS handshake or its headers is cut
 * off, and the server keeps serving everyone else. And the refused-request budget on
 * the wire: curl from one loopback address (127.0.0.9) is answered 429 with
 * Retry-After past it while 127.0.0.1 is not, and the server's shutdown writes the
 * aggregate of what it counted.
 */

import { readFile } from "node:fs/promises";
import { request } from "node:https";
import { connect as tcpConnect } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeid } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { makeWorkDir, removeDir } from "./support/process.ts";
import { cliInitDataDir, setLimits, startServer, type TestServer } from "./support/server.ts";

let work: string;
let server: TestServer;
let port: number;
let ca: string;
let dataDir: string;
const MAX_CONNECTIONS = 16;

beforeAll(async () => {
  work = await makeWorkDir("http-limits");
  ({ dataDir } = await cliInitDataDir(work, "limits.example"));
  await setLimits(dataDir, {
    http: { maxConnections: MAX_CONNECTIONS, handshakeTimeout: "1s", headersTimeout: "2s", requestTimeout: "3s" },
    refusals: { perAddress: 5 },
  });
  server = await startServer(dataDir, work, 0, { mqtt: "off" });
  port = Number(new URL(server.url).port);
  ca = await readFile(server.rootPemFile, "utf8");
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

function get(path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, ca, servername: "localhost", headers, agent: false },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** A TLS connection that completed its handshake, or the error that ended it. */
function tlsOpen(): Promise<TLSSocket | Error> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port, ca, servername: "localhost" });
    s.once("secureConnect", () => resolve(s));
    s.once("error", (e) => resolve(e));
    s.once("close", () => resolve(new Error("closed before the handshake")));
  });
}

/** Milliseconds until the server closes a connection. */
function closedAfter(s: { once(e: "close", f: () => void): unknown }, started: number): Promise<number> {
  return new Promise((resolve) => s.once("close", () => resolve(performance.now() - started)));
}

describe("the refused-request budget on the wire", () => {
  it("answers curl 429 with Retry-After from the flooding address only, and records one aggregate", async () => {
    const enroll = (from: string, i: number) =>
      curl(work, `${server.est}/simpleenroll`, {
        method: "POST",
        body: "MAo=",
        contentType: "application/pkcs10",
        basic: { user: `flood-${i}`, password: "edt_wrong" },
        cacert: server.rootPemFile,
        extraArgs: ["--interface", from],
      });
    // The budget is 5 (set above): five 401s, then 429.
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await enroll("127.0.0.9", i)).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
    const limited = await enroll("127.0.0.9", 99);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect(limited.rawHeaders).toMatch(/\r\nRetry-After: \d+\r\n/);
    expect((await enroll("127.0.0.1", 100)).status).toBe(401);

    await server.stop();
    const audit = await edgeid(["audit", "list", "--data", dataDir, "--action", "est.simpleenroll", "--json"]);
    const records = audit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { remote: string; detail: { reason: string; aggregated?: number } });
    const fromFlooder = records.filter((r) => r.remote === "127.0.0.9");
    expect(fromFlooder.filter((r) => r.detail.aggregated === undefined)).toHaveLength(5);
    expect(fromFlooder.filter((r) => r.detail.aggregated !== undefined).map((r) => r.detail)).toMatchObject([
      { reason: "rate_limited", aggregated: 4 },
    ]);
    server = await startServer(dataDir, work, 0, { mqtt: "off" });
    port = Number(new URL(server.url).port);
  }, 60_000);
});

describe("the HTTPS listener's limits", () => {
  it("answers 431 to a header block over maxHeaderBytes, and serves the next request", async () => {
    expect(await get("/healthz", { "x-padding": "a".repeat(20 * 1024) })).toBe(431);
    expect(await get("/healthz")).toBe(200);
  });

  it("cuts off a client that never completes its TLS handshake (handshakeTimeout)", async () => {
    const started = performance.now();
    const raw = tcpConnect({ host: "127.0.0.1", port });
    raw.on("error", () => undefined);
    const ms = await closedAfter(raw, started);
    expect(ms).toBeGreaterThan(900);
    expect(ms).toBeLessThan(10_000);
  });

  it("cuts off a client that sends its headers too slowly (headersTimeout)", async () => {
    const s = await tlsOpen();
    if (s instanceof Error) throw s;
    const started = performance.now();
    let answer = "";
    s.on("data", (d: Buffer) => {
      answer += d.toString("latin1");
    });
    s.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    const ms = await closedAfter(s, started);
    expect(ms).toBeGreaterThan(1900);
    expect(ms).toBeLessThan(10_000);
    // Node answers 408 before it closes.
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(await get("/healthz")).toBe(200);
  });

  // Last in this block: the server notices the connections this test closes only when
  // its event loop gets to them, so a test after it could find the listener still full.
  it("closes connections beyond maxConnections at once, and accepts again when one closes", async () => {
    const open: TLSSocket[] = [];
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      const s = await tlsOpen();
      if (s instanceof Error) throw s;
      open.push(s);
    }
    try {
      expect(await tlsOpen()).toBeInstanceOf(Error);
      const first = open.shift() as TLSSocket;
      const gone = closedAfter(first, performance.now());
      first.destroy();
      await gone;
      // The server counts the closed connection once it sees it: the next one gets in.
      let again: TLSSocket | Error = new Error("not tried");
      for (let tries = 0; tries < 50 && again instanceof Error; tries++) again = await tlsOpen();
      expect(again).not.toBeInstanceOf(Error);
      open.push(again as TLSSocket);
    } finally {
      for (const s of open) s.destroy();
    }
  });
});
