import type { Hono } from "hono";
import { SealedJwtKeyVault } from "../adapters/sealed-jwt-key-vault.ts";
import { type D1Like, D1Storage } from "../adapters/storage/d1-storage.ts";
import { systemClock } from "../adapters/system-clock.ts";
import { WebCryptoEcdsaSigner, WebCryptoRsaSigner } from "../adapters/webcrypto-signer.ts";
import { webhookNotifier } from "../adapters/webhook.ts";
import { refreshFederatedBundles } from "../adapters/workers/bundle-fetch.ts";
import { workersPeer } from "../adapters/workers/peer.ts";
import { createApp } from "../app.ts";
import { SERVER_ACTOR } from "../authority/actor.ts";
import { Authority } from "../authority/authority.ts";
import { type AuthorityDeps, checkIssuers, type IssuingCa } from "../authority/deps.ts";
import { revocationBase } from "../authority/issue.ts";
import { RevocationResponders } from "../authority/responders.ts";
import { type Config, configSchema, parseConfig, profilesOf } from "../config/schema.ts";
import type { AppEnv } from "../frontends/http/env.ts";
import { FleetMetrics } from "../frontends/metrics/fleet-metrics.ts";
import { FleetLoop } from "../frontends/mqtt/fleet-loop.ts";
import { keyIdentifier, readCertificate } from "../pki/certificate.ts";
import { parsePem, pemCertificates } from "../pki/pem.ts";
import { webCryptoVerifier } from "../pki/verify.ts";
import { webCryptoDigest } from "../pki/webcrypto-digest.ts";
import { createPublicApp } from "../public-app.ts";

/** The Worker's bindings (wrangler.toml): D1, vars and secrets. */
export interface WorkerEnv {
  DB: D1Like;
  /** The configuration (edgeid.json's schema) as JSON text. */
  EDGEID_CONFIG: string;
  /** PEM: the P-256 issuing CA's certificate, then the chain up to the root. */
  CA_CHAIN: string;
  /** Secret (`wrangler secret put CA_KEY`): the issuing CA's PKCS#8 private key, PEM. */
  CA_KEY: string;
  /** Optional, for profiles issued by the RSA hierarchy: its chain (PEM) and, as a secret, its key. */
  CA_RSA_CHAIN?: string;
  CA_RSA_KEY?: string;
  /** The Worker's https base URL; default the request's origin. */
  PUBLIC_URL?: string;
  /**
   * http:// base of the CRL and OCSP URLs in new certificates (overrides the config's
   * publicHttpUrl). When either is set, requests that arrive over plain HTTP are answered
   * by the public app only (CRL, OCSP, CA certificates); everything else is 404 there.
   */
  PUBLIC_HTTP_URL?: string;
  /**
   * Optional secret (at least 32 characters): seals the JWT-SVID signing keys kept in D1
   * (AES-256-GCM under an HKDF-SHA256 key). Without it, the CA_KEY secret is the input
   * keying material.
   */
  JWT_KEY_SECRET?: string;
  /** Secret: the HMAC key for the expiry-alert webhook's X-Edgeid-Signature (config alerts.webhook). */
  ALERTS_WEBHOOK_SECRET?: string;
}

interface Built {
  app: Hono<AppEnv>;
  /** The app for plain-HTTP requests, when a public http base is configured. */
  publicApp?: Hono<AppEnv>;
  responders: RevocationResponders;
  fleet: FleetLoop;
  config: Config;
  authority: Authority;
}

let built: { env: WorkerEnv; ready: Promise<Built> } | undefined;

/** One JSON line per event: on Workers, console output is the log (Workers Logs, `wrangler tail`). */
function log(entry: Record<string, unknown>): void {
  // biome-ignore lint/suspicious/noConsole: console is the Workers runtime's log
  console.log(JSON.stringify(entry));
}

/**
 * An issuing CA from the bindings: its certificate chain (a var) and its key (a secret,
 * imported non-extractable): P-256, or the RSA hierarchy's.
 */
async function issuingCa(name: "issuing-p256" | "issuing-rsa", chainPem: string, keyPem: string): Promise<IssuingCa> {
  const chain = pemCertificates(chainPem);
  const certificate = chain[0];
  if (!certificate) throw new Error(`the chain of ${name} holds no certificate`);
  const keyDer = parsePem(keyPem).find((b) => b.label === "PRIVATE KEY")?.der;
  if (!keyDer) throw new Error(`the key of ${name} is not a PKCS#8 private key (PEM)`);
  const rsa = name === "issuing-rsa";
  const algorithm = rsa ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", namedCurve: "P-256" };
  const key = await crypto.subtle.importKey("pkcs8", keyDer as BufferSource, algorithm, false, ["sign"]);
  const summary = readCertificate(certificate);
  return {
    name,
    certificate,
    subject: summary.subject,
    keyId: await keyIdentifier(summary.spki, webCryptoDigest(crypto.subtle)),
    signer: rsa ? new WebCryptoRsaSigner(key, crypto.subtle) : new WebCryptoEcdsaSigner(key, crypto.subtle),
    chain,
  };
}

async function build(env: WorkerEnv, origin: string): Promise<Built> {
  const config = parseConfig(JSON.parse(env.EDGEID_CONFIG));
  const ca = await issuingCa("issuing-p256", env.CA_CHAIN, env.CA_KEY);
  const cas = new Map([[ca.name, ca]]);
  if (env.CA_RSA_CHAIN && env.CA_RSA_KEY) {
    cas.set("issuing-rsa", await issuingCa("issuing-rsa", env.CA_RSA_CHAIN, env.CA_RSA_KEY));
  }
  checkIssuers(config, cas);
  const storage = new D1Storage(env.DB, crypto.subtle);
  const publicHttpUrl =
    env.PUBLIC_HTTP_URL === undefined
      ? config.publicHttpUrl
      : configSchema.shape.publicHttpUrl.parse(env.PUBLIC_HTTP_URL);
  const deps: AuthorityDeps = {
    config,
    profiles: profilesOf(config),
    storage,
    ca,
    cas,
    clock: systemClock,
    crypto,
    digest: webCryptoDigest(crypto.subtle),
    verifier: webCryptoVerifier(crypto.subtle),
    // One origin serves both schemes; certificates name the http one when it is configured.
    publicUrl: revocationBase({ publicUrl: env.PUBLIC_URL ?? config.publicUrl, publicHttpUrl }, { https: origin }).url,
    idevidAnchors: new Map(),
    jwtKeys: new SealedJwtKeyVault(crypto, env.JWT_KEY_SECRET ?? env.CA_KEY),
  };
  const responders = new RevocationResponders(deps);
  deps.onRevocation = () => responders.revoked();
  await responders.start();
  // No broker reaches a Worker: device messages arrive from `edgeid bridge` through the
  // operator API, and are ingested by a fleet loop whose link goes nowhere.
  // Expiry alerts go to the webhook only (no broker to publish them on).
  const webhook = config.alerts.webhook;
  const authority = new Authority(deps);
  // The JWT key schedule, at every isolate's start (a first key exists before the first
  // JWT-SVID or bundle request) and at every Cron Trigger.
  await authority.trustBundles.rotate();
  const fleet = new FleetLoop({
    authority,
    link: { publish: async () => undefined, disconnect: async () => 0, connectedDevices: () => undefined },
    maxMessageBytes: config.mqtt.maxMessageBytes,
    log: (level, msg, fields) => log({ level, msg, ...fields }),
    auditEveryMs: 0,
    dispatchCommands: false,
    ...(webhook
      ? {
          notify: webhookNotifier({
            url: webhook.url,
            secret: env.ALERTS_WEBHOOK_SECRET,
            timeoutMs: webhook.timeoutMs,
          }),
        }
      : {}),
  });
  // Counters count what this isolate committed; gauges and the expiry histogram are read from D1.
  const metrics = new FleetMetrics({
    storage,
    clock: systemClock,
    profiles: Object.keys(config.profiles),
    connectedDevices: () => undefined,
  });
  storage.observe((writes) => {
    for (const w of writes) if (w.kind === "audit") metrics.observe(w.event);
  });
  const app = createApp({
    authority,
    responders,
    fleet,
    metrics,
    peer: workersPeer,
    logger: {
      request: (entry) => log({ msg: "request", ...entry }),
      error: (err, context) => log({ msg: "unhandled error", err: String(err), ...context }),
    },
  });
  const publicApp = publicHttpUrl
    ? createPublicApp({
        authority,
        responders,
        peer: workersPeer,
        logger: {
          request: (entry) => log({ msg: "request", ...entry }),
          error: (err, context) => log({ msg: "unhandled error", listener: "public", err: String(err), ...context }),
        },
      })
    : undefined;
  return { app, publicApp, responders, fleet, config, authority };
}

/** The isolate's app, built on first use (a request, or a Cron Trigger). */
async function ready(env: WorkerEnv, origin: string): Promise<Built> {
  if (built?.env !== env) built = { env, ready: build(env, origin) };
  try {
    return await built.ready;
  } catch (err) {
    built = undefined;
    throw err;
  }
}

export default {
  /**
   * One app per isolate, built on the first request. Each request first looks for
   * revocations committed by other isolates (one indexed read), so that OCSP and the CRL
   * served here reflect them.
   */
  async fetch(request: Request, env: WorkerEnv, ctx: unknown): Promise<Response> {
    let b: Built;
    try {
      b = await ready(env, new URL(request.url).origin);
    } catch (err) {
      log({ msg: "start failed", err: String(err) });
      return new Response("server misconfigured; see the Worker's log\n", { status: 500 });
    }
    await b.responders.tick();
    // Plain HTTP (a zone that does not redirect it to https) reaches only what is public:
    // a token or a session cookie must never be accepted in clear.
    const app = b.publicApp && new URL(request.url).protocol === "http:" ? b.publicApp : b.app;
    return app.fetch(request, env, ctx as never);
  },

  /**
   * The Cron Trigger (wrangler.toml `[triggers]`): what the Node server runs on timers —
   * expiry alerts (to the webhook), the fleet audit, JWT key rotation, federated bundles
   * and pruning expired workload SVIDs.
   */
  async scheduled(_controller: unknown, env: WorkerEnv): Promise<void> {
    const b = await ready(env, env.PUBLIC_URL ?? "https://edgeid.invalid");
    await b.responders.tick();
    const alerts = await b.fleet.alerts();
    const report = b.config.fleet.auditInterval > 0 ? await b.fleet.audit(SERVER_ACTOR) : undefined;
    const jwt = await b.authority.trustBundles.rotate();
    const pruned = await b.authority.workloadSvids.prune();
    const federated = await refreshFederatedBundles(b.authority, b.config.federation, fetch, log);
    // Refusal windows of this isolate that closed since its last refusal: their aggregate records.
    await b.authority.refusals.flush();
    log({
      msg: "scheduled run",
      alerts: alerts.length,
      findings: report?.findings.length ?? null,
      jwtKeysCreated: jwt.created.length,
      jwtKeysRemoved: jwt.removed.length,
      svidsPruned: pruned.pruned,
      federated,
    });
  },
};
