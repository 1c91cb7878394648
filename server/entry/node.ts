import { parseListen } from "../config/listen.ts";
import "reflect-metadata";
import { readFileSync } from "node:fs";
import { type Server as HttpServer } from "node:http";
import { type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import type { Logger } from "pino";
import { FederationFetcher } from "../adapters/node/bundle-fetcher.ts";
import { nodeCoreDeps } from "../adapters/node/core-deps.ts";
import {
  dataPaths,
  ensureTlsCertificates,
  loadIssuingCas,
  readConfig,
  readTrustAnchors,
  resolveInDataDir,
  resolvePassphrase,
  tlsFilesOf,
} from "../adapters/node/data-dir.ts";
import { type EmbeddedBroker, startEmbeddedBroker } from "../adapters/node/embedded-broker.ts";
import { answersAtEndOfTurn } from "../adapters/node/end-of-turn.ts";
import { connectExternalBroker, type ExternalBroker } from "../adapters/node/external-broker.ts";
import { createListeners } from "../adapters/node/http-limits.ts";
import { JwtKeyFiles } from "../adapters/node/jwt-key-files.ts";
import { LISTENER_TLS } from "../adapters/node/listener-tls.ts";
import { LoopHub, loopCount } from "../adapters/node/loops.ts";
import { crlFileSink, renewExternalCredentials, SERVER_SERVICE } from "../adapters/node/mosquitto.ts";
import { ensureScepRa } from "../adapters/node/scep-ra.ts";
import { JWT_ROTATION_MS, nodeScheduler, REFUSAL_FLUSH_MS, SVID_PRUNE_MS } from "../adapters/node/scheduler.ts";
import { nodePeer } from "../adapters/node/tls-peer.ts";
import { WorkerVerifier } from "../adapters/node/verify-pool.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { systemClock } from "../adapters/system-clock.ts";
import { webhookNotifier } from "../adapters/webhook.ts";
import { createApp } from "../app.ts";
import { Authority } from "../authority/authority.ts";
import { checkIssuers } from "../authority/deps.ts";
import { listenerUrl, revocationBase } from "../authority/issue.ts";
import { type PublishedCrl, RevocationResponders } from "../authority/responders.ts";
import { type Config, configSchema } from "../config/schema.ts";
import { FleetMetrics } from "../frontends/metrics/fleet-metrics.ts";
import { FleetLoop } from "../frontends/mqtt/fleet-loop.ts";
import { type CertificateSummary, readCertificate } from "../pki/certificate.ts";
import { pemCertificates, toPem } from "../pki/pem.ts";
import type { FleetLink } from "../ports/fleet-link.ts";
import { createPublicApp } from "../public-app.ts";

export interface ServeOptions {
  dataDir: string;
  /** HOST:PORT; overrides the configuration. Port 0 picks a free port. */
  listen?: string;
  /** HOST:PORT of the embedded MQTT broker, or "off"; overrides the configuration. */
  mqttListen?: string;
  /** mqtts:// URL of an external broker; overrides mqtt.external.url (which must be configured). */
  mqttUrl?: string;
  /** HOST:PORT of the plain HTTP public listener (CRL, OCSP, CA certificates), or "off"; overrides the configuration. */
  publicListen?: string;
  /** http:// base of the CRL and OCSP URLs in new certificates; overrides publicHttpUrl. */
  publicHttpUrl?: string;
  /** HTTPS event loops (1, a number, or "auto": one per core); overrides the configuration. */
  loops?: number | "auto";
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

export interface RunningServer {
  url: string;
  /** The public listener's URL (http://HOST:PORT), when it runs. */
  publicHttp?: string;
  /** Base of the CRL and OCSP URLs written into new certificates. */
  revocationUrl: string;
  config: Config;
  server: Server;
  /** The plain HTTP public listener, when it runs. */
  publicServer?: HttpServer;
  storage: SqliteStorage;
  responders: RevocationResponders;
  /** The embedded broker's URL, when it runs. */
  mqttUrl?: string;
  fleet: FleetLoop;
  metrics: FleetMetrics;
  /** HTTPS event loops serving the listeners (the main thread's and the worker threads'). */
  loops: number;
  /** Thread ids of the worker loops (loop 2 onwards). */
  loopThreadIds: number[];
  close(): Promise<void>;
}

const LOOP_ENTRY = new URL("./loop.mjs", import.meta.url);

const TLS_RENEWAL_CHECK_MS = 12 * 3600_000;

/** `--public-http-url`, checked as the configuration's publicHttpUrl is. */
function httpBase(value: string): string | undefined {
  const parsed = configSchema.shape.publicHttpUrl.safeParse(value);
  if (!parsed.success) throw new Error(`--public-http-url must be an http:// base URL (got "${value}")`);
  return parsed.data;
}

/** Manufacturer CA certificates per IDevID profile, read and parsed once at start. */
export function manufacturerAnchors(dataDir: string, config: Config): Map<string, CertificateSummary[]> {
  const out = new Map<string, CertificateSummary[]>();
  for (const [name, profile] of Object.entries(config.profiles)) {
    if (!profile.idevid) continue;
    const file = resolveInDataDir(dataDir, profile.idevid.trustBundle);
    const anchors = pemCertificates(readFileSync(file, "utf8"));
    if (anchors.length === 0) throw new Error(`profile ${name}: no certificates in ${file}`);
    out.set(name, anchors.map(readCertificate));
  }
  return out;
}

/** The external broker from the configuration, with `--mqtt-url` applied. */
function externalBroker(opts: ServeOptions, config: Config) {
  const external = config.mqtt.external;
  if (opts.mqttUrl && !external) {
    throw new Error("--mqtt-url needs the broker's files: run `edgeid mqtt mosquitto-config --out DIR` first");
  }
  return external && { ...external, url: opts.mqttUrl ?? external.url };
}

/**
 * Starts the HTTPS listener on an initialised data directory. The port is bound
 * first so that the URLs written into certificates (CRL, OCSP) carry the real port.
 */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const env = opts.env ?? process.env;
  const paths = dataPaths(opts.dataDir);
  const config = readConfig(opts.dataDir);
  const publicHttpUrl = opts.publicHttpUrl === undefined ? config.publicHttpUrl : httpBase(opts.publicHttpUrl);
  const passphrase = resolvePassphrase(opts.dataDir, env, false);
  if (passphrase.development) {
    opts.logger.warn(
      { passphraseFile: passphrase.origin },
      "DEVELOPMENT MODE: the CA key passphrase is stored next to the keys; set EDGEID_CA_PASSPHRASE_FILE for production",
    );
  }
  const cas = await loadIssuingCas(opts.dataDir, passphrase.passphrase);
  checkIssuers(config, cas);
  for (const name of await ensureTlsCertificates(opts.dataDir, cas, config, passphrase.passphrase)) {
    opts.logger.info({ ca: name }, "issued a new TLS certificate for the listener");
  }
  // The SCEP RA (RSA hierarchy only): issued and renewed like the listener certificate.
  let scepRa = await ensureScepRa(opts.dataDir, cas, passphrase.passphrase);
  if (scepRa?.renewed) opts.logger.info("issued a new SCEP RA certificate");
  // One certificate per issuing CA (P-256, and RSA where it exists): a client that can
  // verify ECDSA gets the P-256 chain, an RSA-only appliance the RSA chain (LISTENER_TLS).
  const listenerIdentities = () => {
    const files = [...cas.keys()].map((name) => tlsFilesOf(paths, name));
    return {
      key: files.map((f) => ({ pem: readFileSync(f.key), passphrase: passphrase.passphrase })),
      cert: files.map((f) => readFileSync(f.cert)),
    };
  };
  const idevidAnchors = manufacturerAnchors(opts.dataDir, config);
  const storage = SqliteStorage.open(paths.database, { writer: "thread" });
  const { host, port } = parseListen(opts.listen ?? config.listen);
  const publicListen = opts.publicListen ?? config.publicListen;
  const publicAt = publicListen === "off" ? undefined : parseListen(publicListen, "--public-listen");
  const { loops, reason: oneLoop } = loopCount(opts.loops ?? config.loops);
  if (oneLoop) opts.logger.info({ node: process.version }, oneLoop);

  const tlsFiles = () => ({
    ...LISTENER_TLS,
    ...listenerIdentities(),
    // Ask for a client certificate, naming our roots and the manufacturer roots as
    // acceptable issuers; never require one (simpleenroll with a token has none).
    ca: [...readTrustAnchors(opts.dataDir), ...[...idevidAnchors.values()].flat().map((a) => a.der)].map((d) =>
      Buffer.from(d),
    ),
  });
  const httpLimits = config.limits.http;
  // The public listener: plain HTTP, the same limits; only the public app is ever behind it.
  const { server, serving, publicServer, publicServing } = createListeners(
    tlsFiles(),
    httpLimits,
    publicAt !== undefined,
  );
  // Both listeners' answers of one turn are written together (end-of-turn.ts).
  const atEndOfTurn = answersAtEndOfTurn();
  // A long-running server renews its own listener certificate and swaps it in
  // without dropping connections.
  const renewal = setInterval(() => {
    ensureTlsCertificates(opts.dataDir, cas, config, passphrase.passphrase)
      .then((renewed) => {
        void ensureScepRa(opts.dataDir, cas, passphrase.passphrase)
          .then((ra) => {
            if (!ra?.renewed) return;
            scepRa = ra;
            opts.logger.info("renewed the SCEP RA certificate");
          })
          .catch((err: unknown) => opts.logger.error({ err }, "SCEP RA certificate renewal failed"));
        if (renewed.length === 0) return;
        server.setSecureContext(tlsFiles());
        hub?.setTls(tlsFiles());
        broker?.setTls(brokerTls());
        opts.logger.info("renewed the listener TLS certificate");
      })
      .catch((err: unknown) => opts.logger.error({ err }, "listener TLS certificate renewal failed"));
  }, TLS_RENEWAL_CHECK_MS);
  renewal.unref();
  // With several loops every listener of a port sets reusePort: the kernel spreads connections.
  const bind = (s: HttpServer, at: { host: string; port: number }) =>
    new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      const listen = { port: at.port, host: at.host, ...(loops > 1 ? { reusePort: true } : {}) };
      s.listen(listen, () => resolve((s.address() as AddressInfo).port));
    });
  const bound = await bind(server, { host, port });
  let publicBound: number | undefined;
  // A wildcard listener is reached by its configured hostname, not by 0.0.0.0.
  const url = listenerUrl("https", host, bound, config.hostnames);
  let publicHttp: string | undefined;
  if (publicServer && publicAt) {
    try {
      publicBound = await bind(publicServer, publicAt);
      publicHttp = listenerUrl("http", publicAt.host, publicBound, config.hostnames);
    } catch (err) {
      clearInterval(renewal);
      server.close();
      await storage.close();
      throw err;
    }
  }
  const revocation = revocationBase({ publicUrl: config.publicUrl, publicHttpUrl }, { https: url, publicHttp });
  if (publicHttp && revocation.from === "publicUrl") {
    opts.logger.warn(
      { publicUrl: config.publicUrl, publicHttp },
      "publicUrl is set and publicHttpUrl is not: new certificates keep https:// CRL and OCSP URLs; set publicHttpUrl to the http:// address relying parties reach the public listener at",
    );
  }

  // One worker: with the event loop on one core, the other is left to OpenSSL
  // (signature checks, CA signatures on libuv's pool, TLS) and to whatever else runs.
  const verifier = new WorkerVerifier(1, undefined, "verify-1");
  const deps = nodeCoreDeps({
    config,
    storage,
    cas,
    verifier,
    publicUrl: revocation.url,
    idevidAnchors,
    jwtKeys: new JwtKeyFiles(dataPaths(opts.dataDir).jwtKeys, passphrase.passphrase),
  });
  deps.scepRa = () => scepRa?.ra;
  const log = opts.logger;
  const logAt = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) =>
    log[level](fields ?? {}, msg);
  const external = externalBroker(opts, config);
  const crlSinks: ((crl: PublishedCrl) => void)[] = [
    (crl) =>
      log.info(
        {
          ca: crl.ca,
          crlNumber: crl.number.toString(),
          entries: crl.entries,
          bytes: crl.der.length,
          buildMs: Math.round(crl.buildMs * 10) / 10,
        },
        "published CRL",
      ),
  ];
  if (external?.crlFile) {
    crlSinks.push(
      crlFileSink({
        crlFile: resolveInDataDir(opts.dataDir, external.crlFile),
        pidFile: external.pidFile && resolveInDataDir(opts.dataDir, external.pidFile),
        log: logAt,
      }),
    );
  }
  // The extra event loops, once this one is ready to serve them (below).
  let hub: LoopHub | undefined;
  crlSinks.push((crl) => hub?.publish(crl));
  const responders = new RevocationResponders(deps, (crl) => {
    for (const sink of crlSinks) sink(crl);
  });
  // A revocation is answered once every loop's OCSP cache and refusals reflect it.
  deps.onRevocation = async () => {
    await responders.revoked();
    await hub?.revoked();
  };
  await responders.start(nodeScheduler);

  // The fleet loop: the embedded broker and/or an external one behind one link.
  const links: FleetLink[] = [];
  const link: FleetLink = {
    publish: async (topic, payload, o) => {
      await Promise.all(links.map((l) => l.publish(topic, payload, o)));
    },
    disconnect: async (serial, reason) => {
      let n = 0;
      for (const l of links) n += await l.disconnect(serial, reason);
      return n;
    },
    connectedDevices: () => links.map((l) => l.connectedDevices()).find((n) => n !== undefined),
  };
  const mqttListen = opts.mqttListen ?? (external ? "off" : config.mqtt.listen);
  const metrics = new FleetMetrics({
    storage,
    clock: systemClock,
    profiles: Object.keys(config.profiles),
    connectedDevices: () => link.connectedDevices(),
  });
  storage.observe((writes) => {
    for (const w of writes) if (w.kind === "audit") metrics.observe(w.event);
  });
  const authority = new Authority(deps);
  const fleet = new FleetLoop({
    authority,
    link,
    scheduler: nodeScheduler,
    maxMessageBytes: config.mqtt.maxMessageBytes,
    onMessage: (kind, outcome) => metrics.mqttMessage(kind, outcome),
    log: logAt,
    auditEveryMs: config.fleet.auditInterval * 1000,
    revokeGraceMs: 250,
    alertEveryMs: config.alerts.scanInterval * 1000,
    onAlertScan: (outcome) => metrics.alertScan(outcome),
    notify: config.alerts.webhook
      ? webhookNotifier({
          url: config.alerts.webhook.url,
          secret: config.alerts.webhook.secretFile
            ? readFileSync(resolveInDataDir(opts.dataDir, config.alerts.webhook.secretFile), "utf8").trim()
            : undefined,
          timeoutMs: config.alerts.webhook.timeoutMs,
        })
      : undefined,
    dispatchCommands: mqttListen !== "off" || external !== undefined,
  });
  const receive = (m: Parameters<FleetLoop["receive"]>[0]) => void fleet.receive(m);
  let broker: EmbeddedBroker | undefined;
  let externalClient: ExternalBroker | undefined;
  let externalRenewal: ReturnType<typeof setInterval> | undefined;
  const brokerTls = () => ({
    ...listenerIdentities(),
    // PEM: OpenSSL's verification of the client certificate needs the anchors as PEM.
    ca: [...[...cas.values()].map((c) => c.certificate), ...readTrustAnchors(opts.dataDir)].map((d) =>
      Buffer.from(toPem("CERTIFICATE", d)),
    ),
  });
  try {
    if (mqttListen !== "off") {
      const at = parseListen(mqttListen);
      broker = await startEmbeddedBroker({
        host: at.host,
        port: at.port,
        tls: brokerTls(),
        deps,
        refusals: authority.refusals,
        maxMessageBytes: config.mqtt.maxMessageBytes,
        limits: {
          maxPacketBytes: config.mqtt.maxPacketBytes,
          maxConnectBytes: config.mqtt.maxConnectBytes,
          connectTimeoutMs: config.mqtt.connectTimeout * 1000,
          maxConnections: config.mqtt.maxConnections,
          maxConnectionsPerCertificate: config.mqtt.maxConnectionsPerCertificate,
          maxInflightMessages: config.mqtt.maxInflightMessages,
          maxQueuedMessages: config.mqtt.maxQueuedMessages,
        },
        onMessage: receive,
        onRefused: (reason) => metrics.mqttRefusal(reason),
        log: logAt,
      });
      links.push(broker);
    }
    if (external) {
      // Its client certificate (and the broker's) renewed before they expire, at start and every 12 h.
      const configured = config.mqtt.external as NonNullable<Config["mqtt"]["external"]>;
      const renew = () =>
        renewExternalCredentials({ dataDir: opts.dataDir, external: configured, deps }).then((r) => {
          if (r.client || r.broker) logAt("info", "renewed external broker credentials", r);
          if (r.client) externalClient?.reloadCredentials();
        });
      await renew();
      externalRenewal = setInterval(
        () =>
          void renew().catch((err: unknown) => logAt("error", "external broker credential renewal failed", { err })),
        TLS_RENEWAL_CHECK_MS,
      );
      externalRenewal.unref();
      externalClient = connectExternalBroker({
        url: external.url,
        clientCert: resolveInDataDir(opts.dataDir, external.clientCert),
        clientKey: resolveInDataDir(opts.dataDir, external.clientKey),
        ca: resolveInDataDir(opts.dataDir, external.ca),
        clientId: `service:${SERVER_SERVICE}`,
        onMessage: receive,
        log: logAt,
      });
      links.push(externalClient);
    }
  } catch (err) {
    responders.stop();
    server.close();
    publicServer?.close();
    await Promise.allSettled([storage.close(), verifier.close(), broker?.close()]);
    throw err;
  }
  if (links.length > 0) {
    responders.onRevocations(
      (entries) =>
        void fleet
          .revoked(entries)
          .catch((err: unknown) => logAt("error", "revocation did not reach the broker", { err })),
    );
    deps.onCommands = async () => {
      await fleet.dispatch();
    };
    void fleet.dispatch().catch(() => undefined);
  }
  // Expiry alerts and the hourly audit run with or without a broker.
  fleet.start();
  // JWT-SVID keys: the schedule applied before the first request, then every minute.
  const rotateJwtKeys = async () => {
    const r = await authority.trustBundles.rotate();
    if (r.created.length || r.removed.length) {
      logAt("info", "JWT-SVID keys rotated", { created: r.created, removed: r.removed, sequence: r.sequence });
    }
  };
  await rotateJwtKeys();
  const jwtRotation = nodeScheduler.every(JWT_ROTATION_MS, () => {
    rotateJwtKeys().catch((err: unknown) => logAt("error", "JWT-SVID key rotation failed", { err }));
  });
  // Expired workload SVIDs: pruned once the retention has passed, at start and then hourly.
  const pruneSvids = async () => {
    const r = await authority.workloadSvids.prune();
    if (r.pruned > 0) logAt("info", "expired workload SVIDs pruned", { pruned: r.pruned, before: r.before });
  };
  void pruneSvids().catch((err: unknown) => logAt("error", "workload SVID pruning failed", { err }));
  const svidPruning = nodeScheduler.every(SVID_PRUNE_MS, () => {
    pruneSvids().catch((err: unknown) => logAt("error", "workload SVID pruning failed", { err }));
  });
  // Federated trust domains' bundles: fetched when due, the last good copy kept in the database.
  const federation = new FederationFetcher({
    authority,
    targets: config.federation,
    caFiles: new Map(
      config.federation.flatMap((f) =>
        f.caFile ? [[f.trustDomain, readFileSync(resolveInDataDir(opts.dataDir, f.caFile), "utf8")] as const] : [],
      ),
    ),
    scheduler: nodeScheduler,
    log: (level, msg, fields) => logAt(level, msg, fields),
  });
  await federation.start();
  // Refusal windows close on the next refusal; this writes the aggregates of quiet ones too.
  const refusalFlush = nodeScheduler.every(REFUSAL_FLUSH_MS, () => {
    authority.refusals.flush().catch((err: unknown) => logAt("error", "refusal aggregates were not written", { err }));
  });
  // With several loops, each request line names the loop that answered (this one is 1).
  const requestLog = loops > 1 ? log.child({ loop: 1 }) : log;
  const app = createApp({
    authority,
    responders,
    fleet,
    metrics,
    peer: nodePeer,
    logger: {
      request: (entry) => requestLog.info(entry, "request"),
      error: (err, context) => log.error({ err, ...context }, "unhandled error"),
    },
  });
  if (publicServing) {
    const publicApp = createPublicApp({
      authority,
      responders,
      // The socket's address; a plain connection carries no certificate.
      peer: nodePeer,
      logger: {
        request: (entry) => requestLog.info(entry, "request"),
        error: (err, context) => log.error({ err, listener: "public", ...context }, "unhandled error"),
      },
    });
    publicServing.ready(getRequestListener(atEndOfTurn(publicApp.fetch)));
  }
  // The other loops first: until they listen, this one answers 503 and closes the
  // connection, so that keep-alive clients connect again once the kernel can spread them.
  if (loops > 1) {
    try {
      hub = await LoopHub.start(
        loops - 1,
        LOOP_ENTRY,
        () => ({
          dataDir: opts.dataDir,
          passphrase: passphrase.passphrase,
          config,
          revocationUrl: revocation.url,
          listen: { host, port: bound },
          publicListen: publicAt && publicBound !== undefined ? { host: publicAt.host, port: publicBound } : undefined,
          tls: { ...listenerIdentities(), ca: tlsFiles().ca },
          crls: [...cas.keys()].map((name) => responders.currentCrl(name)).filter((c) => c !== undefined),
        }),
        {
          storage,
          writerPort: () => storage.connectWriter(),
          audited: (events) => {
            for (const e of events) metrics.observe(e);
          },
          revoked: () => responders.revoked(),
          adoptAnswers: (answers) => responders.adoptAnswers(answers),
          commands: deps.onCommands,
          fleet,
          metrics,
          log: logAt,
          scheduler: nodeScheduler,
          now: () => Date.now(),
        },
      );
    } catch (err) {
      log.error({ err }, "the extra event loops did not start");
      await closeAll();
      throw err;
    }
    // One OCSP cache in effect: what one loop signs, every loop serves (loops.ts).
    responders.onAnswerCached(hub.shareAnswer);
  }
  serving.ready(getRequestListener(atEndOfTurn(app.fetch)));
  log.info(
    {
      url,
      loops,
      node: process.version,
      publicHttp: publicHttp ?? "off",
      revocationUrl: revocation.url,
      mqtt: broker?.url,
      mqttExternal: external?.url,
      dataDir: paths.root,
      trustDomain: config.trustDomain,
    },
    "listening",
  );
  return {
    url,
    publicHttp,
    revocationUrl: revocation.url,
    config,
    server,
    publicServer,
    storage,
    responders,
    mqttUrl: broker?.url,
    fleet,
    metrics,
    loops,
    loopThreadIds: hub?.threadIds() ?? [],
    close: closeAll,
  };

  async function closeAll(): Promise<void> {
    clearInterval(renewal);
    clearInterval(externalRenewal);
    refusalFlush.cancel();
    jwtRotation.cancel();
    svidPruning.cancel();
    federation.stop();
    responders.stop();
    fleet.stop();
    // The brokers first: their sessions are closed in the database before it closes.
    await Promise.allSettled([broker?.close(), externalClient?.close()]);
    await Promise.all(
      [server, publicServer].map(
        (s) =>
          s &&
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    // The other loops stop serving and write what they counted, while the writer is open.
    await hub?.close();
    // The windows still open are closed now: what they counted is on record.
    await authority.refusals
      .flush(true)
      .catch((err: unknown) => logAt("error", "refusal aggregates were not written", { err }));
    await Promise.allSettled([storage.close(), verifier.close()]);
  }
}
