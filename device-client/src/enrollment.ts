/**
 * First enrollment: the server's CA pinned (by fingerprint or a CA file), then a token
 * or the IDevID exchanged for the device's first certificate.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { backoffDelay } from "./backoff.ts";
import { type AgentDeps, BUILD_TIME, HOUR } from "./deps.ts";
import { describeOutcome, type EnrollAuth, EstClient } from "./est.ts";
import { generateKey, type KeyType, makeCsr, pemBlocks } from "./keys.ts";
import { type AgentConfig, AgentStore, fingerprint, type Identity, INITIAL_STATE } from "./store.ts";
import { acceptCaBundle, checkIssued } from "./trust.ts";

export interface EnrollOptions {
  dir: string;
  server: string;
  deviceId: string;
  /** "sha256:<hex>" of a CA certificate in the server's /cacerts (the root, from `edgeid ca export`). */
  caFingerprint?: string;
  /** Or: a PEM file with the trust anchors. */
  caFile?: string;
  token?: string;
  idevid?: { cert: string; key: string };
  label?: string;
  keyType?: KeyType;
  renewFraction?: number;
  jitter?: number;
  hook?: string;
  mqtt?: string;
  caRefreshMs?: number;
  /** Give up waiting (202, network) after this long. */
  timeoutMs?: number;
}

/**
 * The trust anchors the operator pinned: the certificates of the CA file, or those of
 * the server's offered /cacerts whose fingerprint is the pinned one.
 */
function pinnedAnchors(o: EnrollOptions, offered: X509Certificate[]): X509Certificate[] {
  if (o.caFile) {
    return pemBlocks(readFileSync(o.caFile, "utf8"), "CERTIFICATE").map((d) => new X509Certificate(d));
  }
  if (o.caFingerprint) {
    const want = o.caFingerprint
      .replace(/^sha256:/i, "")
      .replace(/:/g, "")
      .toLowerCase();
    const anchors = offered.filter((c) => fingerprint(c.raw) === want);
    if (anchors.length === 0) {
      throw new Error(`the server's CA certificates do not match the pinned fingerprint sha256:${want}; not enrolling`);
    }
    return anchors;
  }
  throw new Error("give --ca-fingerprint sha256:… or --ca-file: the server's CA must be pinned");
}

/** The IDevID as a TLS client identity, read from its files. */
export function idevidClient(idevid: { cert: string; key: string }): EnrollAuth {
  const key = createPrivateKey(readFileSync(idevid.key));
  const chain = pemBlocks(readFileSync(idevid.cert, "utf8"), "CERTIFICATE").map((d) => new X509Certificate(d));
  return { client: { key, chain } };
}

/** How the first enrollment authenticates: the one-time token, or the IDevID over mutual TLS. */
function enrollAuth(o: EnrollOptions): EnrollAuth {
  if (o.token) return { basic: { user: o.deviceId, password: o.token } };
  if (o.idevid) return idevidClient(o.idevid);
  throw new Error("give --token (or --token-file) or --idevid-cert with --idevid-key");
}

/**
 * First boot: fetch /cacerts and accept it only against the pinned fingerprint (or an
 * explicit CA file), generate a key, enroll with a token or the IDevID (waiting out
 * 202 Retry-After and network errors), store trust bundle, identity and configuration.
 */
export async function enroll(o: EnrollOptions, deps: AgentDeps): Promise<Identity> {
  const store = new AgentStore(o.dir, deps.crash);
  store.init();
  const bootstrap = await new EstClient(o.server, o.label ?? "", "bootstrap").cacerts();
  const offered = bootstrap.certs.map((d) => new X509Certificate(d));
  const trust = acceptCaBundle(offered, pinnedAnchors(o, offered));
  let floor = Math.max(deps.buildTime ?? BUILD_TIME, bootstrap.date ?? 0);
  const est = new EstClient(o.server, o.label ?? "", trust, () => Math.max(deps.now(), floor));
  const keyType = o.keyType ?? "P-256";
  const key = generateKey(keyType);
  const csr = makeCsr(key, o.deviceId);
  const auth = enrollAuth(o);

  const deadline = deps.now() + (o.timeoutMs ?? 24 * HOUR);
  for (let attempt = 0; ; attempt++) {
    const outcome = await est.simpleenroll(csr, auth);
    if (outcome.date) floor = Math.max(floor, outcome.date);
    if (outcome.kind === "issued") {
      const identity = checkIssued(outcome.chain, key, trust);
      const now = Math.max(deps.now(), floor);
      store.saveTrust(trust);
      // Enrolled in place: a previous slot left from before is no identity to go back to
      // (removed first: a cut in between leaves no slot beside the new identity).
      store.removePrevious();
      store.saveIdentity(identity);
      const config: AgentConfig = {
        server: o.server,
        deviceId: o.deviceId,
        label: o.label ?? "",
        keyType,
        renewFraction: o.renewFraction ?? 2 / 3,
        jitter: o.jitter ?? 0.05,
        ...(o.hook ? { hook: o.hook } : {}),
        ...(o.mqtt ? { mqtt: o.mqtt } : {}),
        caRefreshMs: o.caRefreshMs ?? 24 * HOUR,
        ...(o.idevid ? { idevid: { cert: resolve(o.idevid.cert), key: resolve(o.idevid.key) } } : {}),
      };
      store.saveConfig(config);
      // Enrolling again in place (a device that lost its identity): its session count and
      // time floor go on, its events queue stays; revoked, stopped and lost are cleared.
      const before = store.hasState() ? store.loadState() : undefined;
      store.saveState({
        ...INITIAL_STATE,
        timeFloor: Math.max(now, before?.timeFloor ?? 0),
        session: (before?.session ?? 0) + 1,
        identityReceivedAt: now,
      });
      deps.log("info", "enrolled", { deviceId: o.deviceId, serial: identity.chain[0]?.serialNumber });
      return identity;
    }
    if (outcome.kind === "refused") throw new Error(`enrollment refused (HTTP ${outcome.status}): ${outcome.message}`);
    const wait =
      outcome.kind === "wait" ? outcome.seconds * 1000 : backoffDelay(attempt, 4 * HOUR, deps.random, deps.backoff);
    if (deps.now() + wait > deadline)
      throw new Error(`enrollment did not complete in time: ${describeOutcome(outcome)}`);
    deps.log("info", outcome.kind === "wait" ? "enrollment pending approval" : "enrollment retry", {
      waitMs: wait,
      detail: describeOutcome(outcome),
    });
    await new Promise<void>((resolve) => deps.timers.setTimeout(resolve, wait));
  }
}
