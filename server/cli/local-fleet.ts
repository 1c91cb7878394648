import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { dataPaths, isInitialised, readConfig, resolveInDataDir } from "../adapters/node/data-dir.ts";
import { withIssuer } from "../adapters/node/mosquitto.ts";
import { nodeDigest } from "../adapters/node/node-digest.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { systemClock } from "../adapters/system-clock.ts";
import { CLI_ACTOR } from "../authority/actor.ts";
import { Authority } from "../authority/authority.ts";
import type { AuthorityDeps } from "../authority/deps.ts";
import type { Issued } from "../authority/enrollment-request.ts";
import type { NamesInput } from "../authority/operator-issue.ts";
import { parseDuration } from "../config/duration.ts";
import { type Config, profilesOf } from "../config/schema.ts";
import {
  auditView,
  certificateView,
  commandView,
  deviceDetailView,
  deviceIdevidView,
  deviceView,
  enrollmentView,
  expiringView,
  fleetAuditView,
  metadataView,
  operatorView,
  tokenView,
  workloadEntryView,
} from "../frontends/http/views.ts";
import { type CertificateSummary, readCertificate } from "../pki/certificate.ts";
import { pemCertificates, toPem } from "../pki/pem.ts";
import { webCryptoVerifier } from "../pki/verify.ts";
import type { FleetClient, SignedView } from "./fleet-client.ts";

/** What the legacy commands print: the certificate and its chain up to the root. */
function signedView(r: { issued: Issued; chain: Uint8Array[] }): SignedView {
  return {
    deviceId: r.issued.deviceId,
    serial: r.issued.serial,
    notAfter: r.issued.notAfter.toISOString(),
    certificate: toPem("CERTIFICATE", r.issued.certificate),
    chain: r.chain.map((d) => toPem("CERTIFICATE", d)).join(""),
  };
}

const seconds = (d: string | undefined) => (d === undefined ? undefined : parseDuration(d));

/**
 * The manufacturer CA certificates of each IDevID profile, as `serve` loads them (the
 * trust bundle, relative to the data directory); read only by the commands that need them.
 */
function manufacturerAnchors(dataDir: string, config: Config): Map<string, CertificateSummary[]> {
  const out = new Map<string, CertificateSummary[]>();
  for (const [name, profile] of Object.entries(config.profiles)) {
    if (!profile.idevid) continue;
    const file = resolveInDataDir(dataDir, profile.idevid.trustBundle);
    out.set(name, pemCertificates(readFileSync(file, "utf8")).map(readCertificate));
  }
  return out;
}

/**
 * The core's doors on a data directory, acting as `cli` (an admin). Only what the
 * operator commands need is opened: the database, and the CA keys for the commands that
 * sign (`legacy sign|issue`, for that command only) — the core's doors are the same.
 */
export function localFleet(dataDir: string): FleetClient {
  if (!isInitialised(dataDir)) {
    throw new Error(`${dataPaths(dataDir).root} is not an edgeid data directory; run edgeid init`);
  }
  const config = readConfig(dataDir);
  const storage = SqliteStorage.open(dataPaths(dataDir).database);
  let anchors: Map<string, CertificateSummary[]> | undefined;
  const deps = {
    storage,
    config,
    profiles: profilesOf(config),
    clock: systemClock,
    crypto: webcrypto as Crypto,
    digest: nodeDigest,
    verifier: webCryptoVerifier((webcrypto as Crypto).subtle),
    // Read once, on first use: only bind-idevid needs the manufacturer roots.
    get idevidAnchors() {
      anchors ??= manufacturerAnchors(dataDir, config);
      return anchors;
    },
  };
  // No CA key is open here: the verbs these commands reach read the database only.
  const core = new Authority(deps as unknown as AuthorityDeps);
  const td = config.trustDomain;
  const now = () => deps.clock.now();
  const page = <R, V>(p: { items: R[]; nextCursor: string | null }, view: (r: R) => V) => ({
    items: p.items.map(view),
    nextCursor: p.nextCursor,
  });
  const issuing = (
    deviceId: string,
    profile: string,
    o: {
      csr?: string;
      names?: NamesInput;
      validity?: string;
    } = {},
  ) =>
    withIssuer(dataDir, process.env, (issuer) =>
      new Authority(issuer).certificates.sign(CLI_ACTOR, deviceId, {
        profile,
        csr: o.csr,
        names: o.names,
        validity: seconds(o.validity),
      }),
    );
  return {
    listDevices: async (q) =>
      page(
        await core.devices.list(CLI_ACTOR, { ...q, afterId: q.after, expiringWithin: seconds(q.expiringWithin) }),
        (d) => deviceView(d, td),
      ),
    showDevice: async (id) => deviceDetailView(await core.devices.show(CLI_ACTOR, id), td, now()),
    revokeDevice: async (id, reason, decommission, cascade) => {
      const r = await core.devices.revoke(CLI_ACTOR, id, { reason, decommission, cascade });
      return {
        device: deviceView(r.device, td),
        revokedSerials: r.serials,
        ...(r.appliances ? { appliances: r.appliances } : {}),
      };
    },
    reinstateDevice: async (id, note) => deviceView(await core.devices.reinstate(CLI_ACTOR, id, note), td),
    bindIdevid: async (id, certificate, profile) =>
      deviceIdevidView(await core.devices.bindIdevid(CLI_ACTOR, id, { certificate, ...(profile ? { profile } : {}) })),
    showCertificate: async (serial) => certificateView(await core.certificates.show(CLI_ACTOR, serial)),
    revokeCertificate: async (serial, reason) =>
      certificateView(await core.certificates.revoke(CLI_ACTOR, serial, reason)),
    createTokens: async (batch, opts) => {
      const created = await core.tokens.create(CLI_ACTOR, {
        ...("deviceIds" in batch
          ? { deviceIds: batch.deviceIds }
          : { series: { prefix: batch.devicePrefix, start: batch.start, count: batch.count, width: batch.width } }),
        profile: opts.profile,
        ttl: seconds(opts.ttl),
        names: opts.names,
      });
      return created.map((t) => ({ ...t, expiresAt: t.expiresAt.toISOString() }));
    },
    listTokens: async (q) => page(await core.tokens.list(CLI_ACTOR, q), (t) => tokenView(t, now())),
    revokeToken: async (id) => tokenView(await core.tokens.revoke(CLI_ACTOR, id), now()),
    listEnrollments: async (q) => page(await core.enrollments.list(CLI_ACTOR, q), enrollmentView),
    decideEnrollment: async (id, decision, reason) =>
      enrollmentView(await core.enrollments.decide(CLI_ACTOR, id, decision, reason)),
    listAudit: async (q) => page(await core.audit.list(CLI_ACTOR, q), auditView),
    verifyAudit: () => core.audit.verify(CLI_ACTOR),
    createOperator: async (o) => {
      const r = await core.operators.create(CLI_ACTOR, { name: o.name, role: o.role, ttl: seconds(o.ttl) });
      return { ...operatorView(r.operator), token: r.token };
    },
    listOperators: async () => (await core.operators.list(CLI_ACTOR)).map(operatorView),
    revokeOperator: async (id) => operatorView(await core.operators.revoke(CLI_ACTOR, id)),
    // Queued in the database; the server's fleet loop publishes them (its poll finds them).
    sendCommand: (command, t) =>
      core.commands.create(CLI_ACTOR, command, { ...t, expiringWithin: seconds(t.expiringWithin) }),
    listCommands: async (q) => page(await core.commands.list(CLI_ACTOR, q), commandView),
    showCommand: async (opId) => commandView(await core.commands.show(CLI_ACTOR, opId)),
    auditFleet: async (o) =>
      fleetAuditView(
        await core.fleet.audit(CLI_ACTOR, {
          configured: true,
          expiringWithin: seconds(o.expiringWithin),
          notSeenFor: seconds(o.notSeenFor),
          cloneWindow: seconds(o.cloneWindow),
          limit: o.limit,
        }),
      ),
    setMetadata: async (id, change) => metadataView(await core.devices.label(CLI_ACTOR, id, change)),
    // Signing needs the CA key: opened for this command only (the passphrase as for serve).
    signCsr: async (deviceId, profile, csr, o) =>
      signedView(await issuing(deviceId, profile, { csr, names: o?.names, validity: o?.validity })),
    issueWithKey: async (deviceId, profile, o) => {
      const r = await issuing(deviceId, profile, { names: o?.names, validity: o?.validity });
      return { ...signedView(r), privateKey: toPem("PRIVATE KEY", r.issued.privateKey as Uint8Array) };
    },
    expiring: async (q) =>
      page(
        await core.fleet.expiring(CLI_ACTOR, { within: parseDuration(q.within), cursor: q.cursor, limit: q.limit }),
        expiringView,
      ),
    registerWorkload: async (r) =>
      workloadEntryView(await core.workloads.register(CLI_ACTOR, { ...r, ttl: seconds(r.ttl) }), td),
    listWorkloads: async (q) => page(await core.workloads.list(CLI_ACTOR, q), (e) => workloadEntryView(e, td)),
    deleteWorkload: async (id) => workloadEntryView(await core.workloads.delete(CLI_ACTOR, id), td),
    close: () => storage.close(),
  };
}
