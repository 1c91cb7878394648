/**
 * Federated bundles in the agent, in process: a federated trust domain's bundle that reaches
 * the server after the agent's first fetch (the server fetches foreign bundles on its own
 * schedule, the device's entry revision unchanged) is picked up at the next poll and pushed
 * on the Workload API's streams; a JWT-SVID of that trust domain then validates; a poll
 * that brings nothing new pushes nothing. Real socket, real attestation (this process's
 * uid), the contract server over mutual TLS, a fake clock and timers.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Timers } from "../../device-client/src/deps.ts";
import { children } from "../../device-client/src/der.ts";
import { PROTO_PATH, WorkloadApi } from "../../device-client/src/workload-api.ts";
import { WorkloadHttpClient } from "../../device-client/src/workload-client.ts";
import { SvidManager } from "../../device-client/src/workload-svids.ts";
import { type ContractServer, startContractServer } from "../support/workload-contract-server.ts";
import { pki } from "./support/pki.ts";

const proto = grpc.loadPackageDefinition(
  protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, defaults: true }),
) as unknown as { SpiffeWorkloadAPI: grpc.ServiceClientConstructor };

type Callback = (err: grpc.ServiceError | null, res: never) => void;
interface Client extends grpc.Client {
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchX509Bundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTBundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  ValidateJWTSVID(req: object, md: grpc.Metadata, cb: Callback): grpc.ClientUnaryCall;
}

const header = () => {
  const m = new grpc.Metadata();
  m.set("workload.spiffe.io", "true");
  return m;
};

/** Messages of a server stream, in order. */
function collect(stream: grpc.ClientReadableStream<unknown>) {
  const got: unknown[] = [];
  let wake: (() => void) | undefined;
  stream.on("data", (m) => {
    got.push(m);
    wake?.();
  });
  stream.on("error", () => undefined);
  return {
    got,
    /** Resolves once `n` messages have arrived. */
    count: (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (got.length >= n) resolve();
          else wake = check;
        };
        check();
      }),
  };
}

describe("federated bundles that arrive after the agent's first fetch", () => {
  let t: number;
  let dir: string;
  let contract: ContractServer;
  let svids: SvidManager;
  let api: WorkloadApi;
  let client: Client;
  let timers: { at: number; run: () => void; id: number }[];
  const uid = process.getuid?.() ?? 0;

  const fakeTimers: Timers = {
    setTimeout: (run, ms) => {
      const id = Math.random();
      timers.push({ at: t + ms, run, id });
      return id;
    },
    clearTimeout: (id) => {
      timers = timers.filter((x) => x.id !== id);
    },
  };

  /** Moves the clock to the next timer, fires it, and waits for the refresh it started. */
  const nextPoll = async () => {
    const due = Math.min(...timers.map((x) => x.at));
    t = due;
    const run = timers.filter((x) => x.at <= t);
    timers = timers.filter((x) => x.at > t);
    for (const d of run) d.run();
    await svids.refresh();
  };

  beforeEach(async () => {
    t = Date.now();
    timers = [];
    dir = mkdtempSync(join(tmpdir(), "edgeid-wl-fed-"));
    const p = await pki(t);
    contract = await startContractServer({ tls: { cert: p.server.pem, key: p.server.key }, now: () => t });
    contract.entries = [
      {
        id: "web",
        spiffeId: "spiffe://example.org/device/gw-t/workload/web",
        selectors: [`unix:uid:${uid}`],
        ttlSeconds: 3600,
        jwtAudiences: [],
      },
    ];
    const key = createPrivateKey(p.device.key);
    svids = new SvidManager({
      client: new WorkloadHttpClient(
        contract.url,
        () => ({ key, chain: [p.device.node] }),
        () => [p.root.node],
        () => t,
      ),
      deps: { timers: fakeTimers, log: () => undefined },
      now: () => t,
    });
    api = new WorkloadApi({
      socketPath: join(dir, "run", "workload.sock"),
      source: svids,
      log: () => undefined,
      now: () => t,
    });
  });

  afterEach(async () => {
    client?.close();
    svids.stop();
    await api?.stop();
    await contract.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is fetched at the next poll, pushed on the streams, and validates that domain's JWT-SVIDs", async () => {
    await svids.start();
    await api.start();
    client = new proto.SpiffeWorkloadAPI(
      `unix:${join(dir, "run", "workload.sock")}`,
      grpc.credentials.createInsecure(),
    ) as unknown as Client;
    const svidStream = collect(client.FetchX509SVID({}, header()));
    const x509Stream = collect(client.FetchX509Bundles({}, header()));
    const jwtStream = collect(client.FetchJWTBundles({}, header()));
    await Promise.all([svidStream.count(1), x509Stream.count(1), jwtStream.count(1)]);
    expect(Object.keys((x509Stream.got[0] as { bundles: object }).bundles)).toEqual(["spiffe://example.org"]);
    expect(Object.keys((jwtStream.got[0] as { bundles: object }).bundles)).toEqual(["spiffe://example.org"]);

    // A token of other.org, signed by a key other.org publishes in its bundle.
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), use: "jwt-svid", kid: "o1" };
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "o1", typ: "JWT" })
      .setSubject("spiffe://other.org/workload/payments")
      .setAudience("billing")
      .setIssuedAt(Math.floor(t / 1000))
      .setExpirationTime(Math.floor(t / 1000) + 3000)
      .sign(privateKey);
    const validate = () =>
      new Promise<{ err: grpc.ServiceError | null; res: { spiffe_id: string } }>((resolve) =>
        client.ValidateJWTSVID({ audience: "billing", svid: token }, header(), (err, res) => resolve({ err, res })),
      );
    const before = await validate();
    expect(before.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(before.err?.details).toContain("no JWT bundle for trust domain other.org");

    // The server now has other.org's bundle; the device's entries are unchanged.
    const otherRoot = new X509Certificate(contract.issuingPem);
    contract.federated = {
      "other.org": {
        keys: [{ ...jwk, use: "x509-svid", kid: undefined, x5c: [otherRoot.raw.toString("base64")] }, jwk],
        spiffe_sequence: 1,
      },
    };
    await nextPoll();
    expect([...svids.jwtBundles.keys()].sort()).toEqual(["example.org", "other.org"]);
    await Promise.all([svidStream.count(2), x509Stream.count(2), jwtStream.count(2)]);
    const svidMsg = svidStream.got[1] as { federated_bundles: Record<string, Buffer> };
    const fedDer = svidMsg.federated_bundles["spiffe://other.org"] as Buffer;
    expect(children(new Uint8Array(fedDer)).map((el) => Buffer.from(el.raw).toString("base64"))).toEqual([
      otherRoot.raw.toString("base64"),
    ]);
    const x509 = (x509Stream.got[1] as { bundles: Record<string, Buffer> }).bundles;
    expect(Object.keys(x509).sort()).toEqual(["spiffe://example.org", "spiffe://other.org"]);
    const jwt = (jwtStream.got[1] as { bundles: Record<string, Buffer> }).bundles;
    expect(Object.keys(jwt).sort()).toEqual(["spiffe://example.org", "spiffe://other.org"]);
    expect(JSON.parse((jwt["spiffe://other.org"] as Buffer).toString())).toEqual({ keys: [jwk] });

    const after = await validate();
    expect(after.err).toBeNull();
    expect(after.res.spiffe_id).toBe("spiffe://other.org/workload/payments");

    // A poll that brings nothing new tells no listener (the streams get nothing).
    let told = 0;
    svids.onChange(() => {
      told++;
    });
    await nextPoll();
    expect(told).toBe(0);
    expect(contract.requests.filter((r) => r.path === "/workload/v1/bundles").length).toBeGreaterThanOrEqual(3);

    // other.org dropped from the server's federation: gone from the streams at the next poll.
    contract.federated = {};
    await nextPoll();
    await jwtStream.count(3);
    expect(Object.keys((jwtStream.got[2] as { bundles: object }).bundles)).toEqual(["spiffe://example.org"]);
    expect((await validate()).err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
