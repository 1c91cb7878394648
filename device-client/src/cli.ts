import { existsSync, readFileSync, rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { Agent } from "./agent.ts";
import { type AgentDeps, nodeDeps } from "./deps.ts";
import { enroll } from "./enrollment.ts";
import { KEY_TYPES, type KeyType } from "./keys.ts";
import { AgentStore, type CrashStep } from "./store.ts";
import { readWorkloadSummary, type WorkloadSummary } from "./workload-svids.ts";

const USAGE = `edgeid-agent: the edgeid device agent

  edgeid-agent enroll --server URL (--ca-fingerprint sha256:HEX | --ca-file FILE) --device ID
                      (--token T | --token-file F | --idevid-cert FILE --idevid-key FILE)
                      --dir DIR [--label PROFILE] [--key-type P-256|P-384|Ed25519|RSA-2048|RSA-3072]
                      [--renew-fraction 0.67] [--hook CMD] [--mqtt mqtts://HOST:PORT]
  edgeid-agent run    --dir DIR [--mqtt URL] [--workload-socket PATH | --workload-api]
                      [--workload-socket-mode 0666] [--workload-keys-dir DIR]
  edgeid-agent renew  --now --dir DIR       (signals a running agent, or renews once itself)
  edgeid-agent status --dir DIR [--json]
`;

/** Test-only fault injection: EDGEID_AGENT_CRASH_AT=<step> kills the process at that step. */
function crashHook(env: NodeJS.ProcessEnv): AgentDeps["crash"] {
  const at = env.EDGEID_AGENT_CRASH_AT as CrashStep | undefined;
  if (!at) return undefined;
  return (step) => {
    if (step === at) process.kill(process.pid, "SIGKILL");
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The text form of the workload summary: one line, then one per entry with its SVID. */
function workloadLines(w: WorkloadSummary | null): string {
  if (!w) return `${"workloads".padEnd(12)} -\n`;
  const bySvid = new Map(w.svids.map((s) => [s.entryId, s]));
  const head = `${"workloads".padEnd(12)} ${w.entries.length} ${w.entries.length === 1 ? "entry" : "entries"}, ${w.svids.length} ${w.svids.length === 1 ? "SVID" : "SVIDs"}${w.revoked ? " (device revoked: none served)" : ""} as of ${w.updatedAt}\n`;
  return (
    head +
    w.entries
      .map((e) => {
        const s = bySvid.get(e.id);
        return `  ${e.spiffeId} entry ${e.id} ${s ? `serial ${s.serial} notAfter ${s.notAfter}` : "no SVID"}\n`;
      })
      .join("")
  );
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      dir: { type: "string" },
      server: { type: "string" },
      "ca-fingerprint": { type: "string" },
      "ca-file": { type: "string" },
      device: { type: "string" },
      token: { type: "string" },
      "token-file": { type: "string" },
      "idevid-cert": { type: "string" },
      "idevid-key": { type: "string" },
      label: { type: "string" },
      "key-type": { type: "string" },
      "renew-fraction": { type: "string" },
      hook: { type: "string" },
      mqtt: { type: "string" },
      "workload-socket": { type: "string" },
      "workload-api": { type: "boolean" },
      "workload-socket-mode": { type: "string" },
      "workload-keys-dir": { type: "string" },
      now: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (!command || values.help || !values.dir) {
    process.stderr.write(USAGE);
    return command && !values.help ? 2 : 0;
  }
  const deps = nodeDeps({ crash: crashHook(env) });
  const dir = values.dir;
  switch (command) {
    case "enroll": {
      if (!values.server || !values.device) throw new Error("enroll needs --server and --device");
      const keyType = (values["key-type"] ?? "P-256") as KeyType;
      if (!KEY_TYPES.includes(keyType)) throw new Error(`--key-type is one of ${KEY_TYPES.join(", ")}`);
      const token =
        values.token ?? (values["token-file"] ? readFileSync(values["token-file"], "utf8").trim() : undefined);
      const identity = await enroll(
        {
          dir,
          server: values.server,
          deviceId: values.device,
          caFingerprint: values["ca-fingerprint"],
          caFile: values["ca-file"],
          token,
          idevid:
            values["idevid-cert"] && values["idevid-key"]
              ? { cert: values["idevid-cert"], key: values["idevid-key"] }
              : undefined,
          label: values.label,
          keyType,
          renewFraction: values["renew-fraction"] ? Number(values["renew-fraction"]) : undefined,
          hook: values.hook,
          mqtt: values.mqtt,
        },
        deps,
      );
      const leaf = identity.chain[0];
      process.stdout.write(
        `enrolled ${values.device}: serial ${leaf?.serialNumber.toLowerCase()}, expires ${leaf?.validTo}\n`,
      );
      // A running agent on this directory (re-bootstrap in place) picks the new identity up.
      const store = new AgentStore(dir);
      const pid = existsSync(store.paths.pid) ? Number(readFileSync(store.paths.pid, "utf8").trim()) : 0;
      if (pid > 0 && alive(pid)) {
        process.kill(pid, "SIGHUP");
        process.stdout.write(`asked the running agent (pid ${pid}) to load it\n`);
      }
      return 0;
    }
    case "run": {
      const agent = new Agent(dir, deps);
      // The SPIFFE Workload API: --workload-socket PATH, or --workload-api for the default
      // path (/run/edgeid-agent/workload.sock), or `workloadSocket` in config.json.
      const socket = values["workload-socket"] ?? (values["workload-api"] ? "default" : undefined);
      agent.start({
        mqtt: values.mqtt,
        workload: {
          ...(socket ? { socket } : {}),
          ...(values["workload-socket-mode"] ? { socketMode: values["workload-socket-mode"] } : {}),
          ...(values["workload-keys-dir"] ? { keysDir: values["workload-keys-dir"] } : {}),
        },
      });
      // The handlers first: `renew --now` signals the pid in the file, and a SIGUSR1 that
      // came before its handler would open Node's inspector instead.
      process.on("SIGUSR1", () => agent.renewNow());
      process.on("SIGHUP", () => agent.reload());
      const pidFile = agent.store.paths.pid;
      agent.store.writeAtomic(pidFile, `${process.pid}\n`, 0o644);
      await new Promise<void>((resolve) => {
        const stop = () => void agent.stop().then(resolve);
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
      });
      rmSync(pidFile, { force: true });
      return 0;
    }
    case "renew": {
      if (!values.now) throw new Error("renew needs --now");
      const store = new AgentStore(dir);
      const pid = existsSync(store.paths.pid) ? Number(readFileSync(store.paths.pid, "utf8").trim()) : 0;
      if (pid > 0 && alive(pid)) {
        process.kill(pid, "SIGUSR1");
        process.stdout.write(`asked the running agent (pid ${pid}) to renew now\n`);
        return 0;
      }
      const agent = new Agent(dir, deps);
      agent.load();
      const result = await agent.renewOnce(true);
      process.stdout.write(`${result}: ${agent.leaf.serialNumber.toLowerCase()} until ${agent.leaf.validTo}\n`);
      return result === "renewed" ? 0 : 1;
    }
    case "status": {
      const agent = new Agent(dir, deps);
      agent.load({ inspect: true });
      const doc = agent.statusDocument();
      const store = agent.store.loadState();
      const out = {
        deviceId: agent.store.loadConfig().deviceId,
        state: doc.state,
        serial: doc.cert.serial,
        notAfter: doc.cert.notAfter,
        keyAlg: doc.cert.keyAlg,
        nextRenewAt: new Date(store.nextRenewAt ?? agent.renewAt()).toISOString(),
        lastRenew: store.lastRenew,
        lastError: store.lastError,
        revoked: store.revoked,
        unconfirmed: store.unconfirmed,
        fallback: store.fallback,
        session: store.session,
      };
      // What the running agent's Workload API holds (entries, SVIDs: never a key).
      const workloads = readWorkloadSummary(agent.store.paths.workloads) ?? null;
      if (values.json) process.stdout.write(`${JSON.stringify({ ...out, workloads })}\n`);
      else {
        for (const [k, v] of Object.entries(out))
          process.stdout.write(
            `${k.padEnd(12)} ${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? "-")}\n`,
          );
        process.stdout.write(workloadLines(workloads));
      }
      return 0;
    }
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}
