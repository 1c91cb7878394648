/**
 * One extra HTTPS event loop of `edgeid serve --loops N` (a worker thread started by
 * `startServer` through `LoopHub`): its own listeners on the shared ports (reusePort),
 * its own read connection, CA signers, verifier and OCSP cache; its writes, CRLs,
 * revocation fan-out, fleet loop and metrics are the main thread's (`LoopLink`).
 * Wiring only: the behaviour is in adapters/node/loops.ts and the core.
 */
import "reflect-metadata";
import { readlinkSync } from "node:fs";
import { type Server as HttpServer } from "node:http";
import { type MessagePort, parentPort, workerData } from "node:worker_threads";
import { getRequestListener } from "@hono/node-server";
import { pino } from "pino";
import { nodeCoreDeps } from "../adapters/node/core-deps.ts";
import { dataPaths, loadIssuingCas } from "../adapters/node/data-dir.ts";
import { answersAtEndOfTurn } from "../adapters/node/end-of-turn.ts";
import { createListeners } from "../adapters/node/http-limits.ts";
import { JwtKeyFiles } from "../adapters/node/jwt-key-files.ts";
import { LISTENER_TLS } from "../adapters/node/listener-tls.ts";
import { LoopLink } from "../adapters/node/loops.ts";
import { REFUSAL_FLUSH_MS, nodeScheduler as scheduler } from "../adapters/node/scheduler.ts";
import { nodePeer } from "../adapters/node/tls-peer.ts";
import { WorkerVerifier } from "../adapters/node/verify-pool.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { createApp } from "../app.ts";
import { Authority } from "../authority/authority.ts";
import { type PublishedCrl, RevocationResponders } from "../authority/responders.ts";
import type { Config } from "../config/schema.ts";
import { createPublicApp } from "../public-app.ts";
import { manufacturerAnchors } from "./node.ts";

/** What the main thread hands a loop (structured clone). */
export interface LoopData {
  loop: number;
  dataDir: string;
  passphrase: string;
  config: Config;
  revocationUrl: string;
  listen: { host: string; port: number };
  publicListen?: { host: string; port: number };
  /** key, cert and ca of the HTTPS listener (LISTENER_TLS is added here). */
  tls: Record<string, unknown>;
  crls: PublishedCrl[];
  /** This loop's own line to the writer thread (SqliteStorage#connectWriter). */
  writerPort?: MessagePort;
}

async function main(data: LoopData, link: LoopLink): Promise<void> {
  const log = pino({ base: { loop: data.loop }, redact: ["req.headers.authorization", "token", "passphrase"] });
  const { config } = data;
  const cas = await loadIssuingCas(data.dataDir, data.passphrase);
  // Write sets go straight to the writer thread over this loop's own line; the audit
  // records they carried are told to the main thread, whose metrics count them.
  const storage = SqliteStorage.open(dataPaths(data.dataDir).database, {
    writer: { ...link.writer, port: data.writerPort },
  });
  storage.observe((writes) => {
    link.audited(writes.flatMap((w) => (w.kind === "audit" ? [w.event] : [])));
  });
  const verifier = new WorkerVerifier(1, undefined, `verify-${data.loop}`);
  const deps = nodeCoreDeps({
    config,
    storage,
    cas,
    verifier,
    publicUrl: data.revocationUrl,
    idevidAnchors: manufacturerAnchors(data.dataDir, config),
    jwtKeys: new JwtKeyFiles(dataPaths(data.dataDir).jwtKeys, data.passphrase),
  });
  const responders = new RevocationResponders(deps, undefined, "follow");
  for (const crl of data.crls) responders.adopt(crl);
  // Answered once every loop (this one too) has read the revocation.
  deps.onRevocation = () => link.revoked();
  deps.onCommands = () => link.commands();
  // One OCSP cache in effect: what one loop signs, every loop serves (loops.ts).
  responders.onAnswerCached(link.shareAnswer);
  await responders.start(scheduler);
  const authority = new Authority(deps);
  const refusalFlush = scheduler.every(REFUSAL_FLUSH_MS, () => {
    authority.refusals.flush().catch((err: unknown) => log.error({ err }, "refusal aggregates were not written"));
  });

  const limits = config.limits.http;
  const { server, serving, publicServer, publicServing } = createListeners(
    { ...LISTENER_TLS, ...data.tls },
    limits,
    data.publicListen !== undefined,
  );
  // Both listeners' answers of one turn are written together (end-of-turn.ts).
  const atEndOfTurn = answersAtEndOfTurn();
  const logger = {
    request: (entry: object) => log.info(entry, "request"),
    error: (err: unknown, context: object) => log.error({ err, ...context }, "unhandled error"),
  };
  const app = createApp({ authority, responders, fleet: link.fleet, metrics: link.metrics, peer: nodePeer, logger });
  serving.ready(getRequestListener(atEndOfTurn(app.fetch)));
  if (publicServing) {
    const publicApp = createPublicApp({ authority, responders, peer: nodePeer, logger });
    publicServing.ready(getRequestListener(atEndOfTurn(publicApp.fetch)));
  }

  let closing: Promise<void> | undefined;
  link.listen({
    revoked: () => responders.revoked(),
    crl: (crl) => responders.adopt(crl),
    ocspAnswers: (answers) => responders.adoptAnswers(answers),
    tls: (tls) => server.setSecureContext({ ...LISTENER_TLS, ...(tls as object) }),
    close: () => {
      closing ??= (async () => {
        refusalFlush.cancel();
        responders.stop();
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
        await authority.refusals
          .flush(true)
          .catch((err: unknown) => log.error({ err }, "refusal aggregates were not written"));
        await Promise.allSettled([storage.close(), verifier.close()]);
      })();
      return closing;
    },
  });

  const bind = (s: HttpServer, at: { host: string; port: number }) =>
    new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen({ port: at.port, host: at.host, reusePort: true } as Parameters<HttpServer["listen"]>[0], () =>
        resolve(),
      );
    });
  await bind(server, data.listen);
  if (publicServer && data.publicListen) await bind(publicServer, data.publicListen);
  log.info({ tid: threadId() }, "event loop listening");
}

/** This thread's id in the kernel (Linux), for per-loop CPU figures; undefined elsewhere. */
function threadId(): number | undefined {
  try {
    return Number(readlinkSync("/proc/thread-self").split("/").pop());
  } catch {
    return undefined;
  }
}

if (!parentPort) throw new Error("server/entry/loop.ts runs as a worker thread of startServer");
const link = new LoopLink(parentPort);
main(workerData as LoopData, link).then(
  () => link.ready(),
  (err: unknown) => link.failed(err),
);
