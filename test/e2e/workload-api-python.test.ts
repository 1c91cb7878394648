/**
 * The agent's SPIFFE Workload API from another language: Python's gRPC (Debian's
 * python3-grpcio, the project's .proto compiled at test time with grpc_tools.protoc)
 * calls every method over the socket of a real `edgeid-agent run --workload-socket`,
 * from processes running as other users (setpriv). The agent talks mutual TLS to an
 * HTTPS server implementing the workload contract (test/support/workload-contract-server.ts).
 * A matching uid gets its SVID (checked with `openssl verify` against the bundle it was
 * given) and JWT-SVID (checked by the agent's ValidateJWTSVID and by PyJWT); another uid
 * gets PermissionDenied; a call without the header gets InvalidArgument.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { children } from "../../device-client/src/der.ts";
import { agentDir, pki } from "../device-client/support/pki.ts";
import { type ContractServer, startContractServer } from "../support/workload-contract-server.ts";
import { AGENT_BIN, AGENT_ENV } from "./support/agent.ts";

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, "../..");
const PYTHON = "/usr/bin/python3";
const UID_OK = 41001;
const UID_OTHER = 41002;
const AUDIENCE = "billing";

const pem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;
const split = (b64: string) => children(new Uint8Array(Buffer.from(b64, "base64"))).map((el) => el.raw);

type Answer = Record<string, Record<string, unknown> & { error?: string }>;

describe("SPIFFE Workload API from Python's gRPC, as other users", () => {
  let dir: string;
  let gen: string;
  let socket: string;
  let contract: ContractServer;
  let agent: ChildProcess;
  let agentLog = "";

  /**
   * Runs the Python client as `uid` (and gid = uid) with no supplementary groups.
   * Asynchronously: the contract server answering the agent lives in this process.
   */
  const asUser = async (uid: number, ...extra: string[]): Promise<Answer> => {
    const { stdout: out } = await execFileAsync(
      "setpriv",
      [
        `--reuid=${uid}`,
        `--regid=${uid}`,
        "--clear-groups",
        PYTHON,
        join(gen, "workload_client.py"),
        gen,
        socket,
        AUDIENCE,
        ...extra,
      ],
      {
        encoding: "utf8",
        env: { PATH: "/usr/bin:/bin", HOME: "/nonexistent", PYTHONDONTWRITEBYTECODE: "1" },
        timeout: 60_000,
      },
    );
    return JSON.parse(out) as Answer;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeid-wl-py-"));
    chmodSync(dir, 0o755);
    gen = join(dir, "gen");
    mkdirSync(gen, { mode: 0o755 });
    execFileSync(PYTHON, [
      "-m",
      "grpc_tools.protoc",
      `-I${join(ROOT, "device-client/proto")}`,
      `-I${execFileSync(PYTHON, ["-c", "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))"], { encoding: "utf8" }).trim()}`,
      `--python_out=${gen}`,
      `--grpc_python_out=${gen}`,
      "workload.proto",
    ]);
    cpSync(join(ROOT, "test/support/workload_client.py"), join(gen, "workload_client.py"));
    for (const f of ["workload_pb2.py", "workload_pb2_grpc.py", "workload_client.py"]) chmodSync(join(gen, f), 0o644);

    const now = Date.now();
    const p = await pki(now);
    contract = await startContractServer({ tls: { cert: p.server.pem, key: p.server.key }, now: () => Date.now() });
    // The executable the Python process runs, as the kernel shows it (/proc/PID/exe).
    const python = realpathSync(PYTHON);
    const pythonSha = createHash("sha256").update(readFileSync(python)).digest("hex");
    contract.entries = [
      {
        id: "billing",
        spiffeId: "spiffe://example.org/device/gw-t/workload/billing",
        selectors: [`unix:uid:${UID_OK}`, `unix:gid:${UID_OK}`, `unix:path:${python}`, `unix:sha256:${pythonSha}`],
        ttlSeconds: 3600,
        jwtAudiences: [AUDIENCE],
      },
      {
        id: "nobody-runs-this",
        spiffeId: "spiffe://example.org/device/gw-t/workload/other",
        selectors: [`unix:uid:${UID_OTHER}`, "unix:path:/usr/bin/not-python"],
        ttlSeconds: 3600,
        jwtAudiences: [],
      },
    ];
    const agentHome = join(dir, "agent");
    agentDir(agentHome, p, now, { server: contract.url });
    socket = join(dir, "run", "workload.sock");
    agent = spawn(process.execPath, [AGENT_BIN, "run", "--dir", agentHome, "--workload-socket", socket], {
      env: AGENT_ENV,
      stdio: ["ignore", "ignore", "pipe"],
    });
    agent.stderr?.on("data", (c: Buffer) => {
      agentLog += c.toString();
    });
    // Ready when the socket is there and the SVID was issued.
    const deadline = Date.now() + 30_000;
    while (!(existsSync(socket) && contract.requests.some((r) => r.path === "/workload/v1/x509-svids"))) {
      if (Date.now() > deadline || agent.exitCode !== null) throw new Error(`agent not ready:\n${agentLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      agent.kill("SIGTERM");
      await new Promise((r) => agent.once("exit", r));
    }
    await contract?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("gives the matching uid its X.509-SVID (openssl verifies it against the bundle), bundles, and a JWT-SVID", async () => {
    const a = await asUser(UID_OK);
    const x = a.FetchX509SVID as {
      svids: { spiffe_id: string; x509_svid: string; x509_svid_key: string; bundle: string }[];
    };
    expect(x.svids).toHaveLength(1);
    const svid = x.svids[0] as (typeof x.svids)[number];
    expect(svid.spiffe_id).toBe("spiffe://example.org/device/gw-t/workload/billing");
    const [leaf, ...intermediates] = split(svid.x509_svid);
    const files = join(dir, `verify-${Date.now()}`);
    mkdirSync(files);
    writeFileSync(join(files, "leaf.pem"), pem(leaf as Uint8Array));
    writeFileSync(join(files, "chain.pem"), intermediates.map(pem).join(""));
    writeFileSync(join(files, "bundle.pem"), split(svid.bundle).map(pem).join(""));
    writeFileSync(join(files, "key.der"), Buffer.from(svid.x509_svid_key, "base64"));
    const verified = execFileSync(
      "openssl",
      ["verify", "-CAfile", join(files, "bundle.pem"), "-untrusted", join(files, "chain.pem"), join(files, "leaf.pem")],
      { encoding: "utf8" },
    );
    expect(verified.trim()).toBe(`${join(files, "leaf.pem")}: OK`);
    const cert = new X509Certificate(pem(leaf as Uint8Array));
    expect(cert.subjectAltName).toBe(`URI:${svid.spiffe_id}`);
    // The key is the certificate's (openssl reads the PKCS#8 DER).
    const keyPub = execFileSync("openssl", ["pkey", "-inform", "DER", "-in", join(files, "key.der"), "-pubout"], {
      encoding: "utf8",
    });
    expect(keyPub).toBe(cert.publicKey.export({ type: "spki", format: "pem" }));

    const xb = a.FetchX509Bundles as { bundles: Record<string, string> };
    expect(Object.keys(xb.bundles)).toEqual(["spiffe://example.org"]);
    const jb = a.FetchJWTBundles as { bundles: Record<string, { keys: { use: string }[] }> };
    expect(jb.bundles["spiffe://example.org"]?.keys.map((k) => k.use)).toEqual(["jwt-svid"]);

    const j = a.FetchJWTSVID as { svids: { spiffe_id: string; svid: string }[] };
    expect(j.svids.map((s) => s.spiffe_id)).toEqual([svid.spiffe_id]);
    const v = a.ValidateJWTSVID as { spiffe_id: string; claims: { sub: string; aud: string[] } };
    expect(v.spiffe_id).toBe(svid.spiffe_id);
    expect(v.claims.sub).toBe(svid.spiffe_id);
    expect(v.claims.aud).toEqual([AUDIENCE]);
    expect(a.pyjwt).toEqual({ sub: svid.spiffe_id, aud: [AUDIENCE] });
  }, 60_000);

  it("denies another uid on every method (PermissionDenied)", async () => {
    const a = await asUser(UID_OTHER);
    for (const method of ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles", "FetchJWTSVID", "ValidateJWTSVID"])
      expect(a[method]?.error, method).toBe("PERMISSION_DENIED");
  }, 60_000);

  it("refuses calls without the workload.spiffe.io header (InvalidArgument)", async () => {
    const a = await asUser(UID_OK, "--no-header");
    for (const method of ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles", "FetchJWTSVID", "ValidateJWTSVID"])
      expect(a[method]?.error, method).toBe("INVALID_ARGUMENT");
  }, 60_000);
});
