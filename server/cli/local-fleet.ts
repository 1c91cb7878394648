import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { dataPaths, isInitialised, readConfig, resolveInDataDir } from "../adapters/node/data-dir.ts";
import { withIssuer } from "../adapters/node/mosquitto.ts";
import { nodeDigest } from "../adapters/node/node-digest.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { systemClock } from "../adapters/system-clock.ts";
import { CLI_ACTOR } from "../authority/actor.ts";
import { decideEnrollment } from "../authority/approvals.ts";
import { verifyAuditChain } from "../authority/audit-chain.ts";
import { getCommand, issueCommands, listCommands } from "../authority/commands.ts";
import { type AuthorityDeps, caFor } from "../authority/deps.ts";
import { type Issued } from "../authority/enrollment-request.ts";
import { runFleetAudit } from "../authority/fleet-audit.ts";
import { bindIdevid, decodeCertificateText } from "../authority/idevid-binding.ts";
import {
  getCertificate,
  issueTokens,
  listDevices,
  listEnrollments,
  listTokens,
  readAudit,
  revokeToken,
  showDevice,
} from "../authority/inventory.ts";
import { expiringReport, setDeviceMetadata } from "../authority/lifecycle.ts";
import { decodeCsrText, issueWithGeneratedKey, signForDevice } from "../authority/operator-issue.ts";
import { createOperator, listOperators, revokeOperator } from "../authority/operators.ts";
import { resolveProfile } from "../authority/profiles.ts";
import { reinstateDevice, revokeCertificate, revokeDevice } from "../authority/revoke.ts";
import { batchDeviceIds } from "../authority/tokens.ts";
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
} from "../frontends/http/views.ts";
import { type CertificateSummary, readCertificate } from "../pki/certificate.ts";
import { pemCertificates, toPem } from "../pki/pem.ts";
import { webCryptoVerifier } from "../pki/verify.ts";
import type { FleetClient, SignedView } from "./fleet-client.ts";

function signedView(issuer: AuthorityDeps, issued: Issued, profile: string): SignedView {
  return {
    deviceId: issued.deviceId,
    serial: issued.serial,
    notAfter: issued.notAfter.toISOString(),
    certificate: toPem("CERTIFICATE", issued.certificate),
    chain: caFor(issuer, resolveProfile(issuer, profile))
      .chain.map((d) => toPem("CERTIFICATE", d))
      .join(""),
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

/** The core's verbs on a data directory, acting as `cli` (an admin). */
export function localFleet(dataDir: string): FleetClient {
  if (!isInitialised(dataDir)) {
    throw new Error(`${dataPaths(dataDir).root} is not an edgeid data directory; run edgeid init`);
  }
  const config = readConfig(dataDir);
  const storage = SqliteStorage.open(dataPaths(dataDir).database);
  const deps = {
    storage,
    config,
    profiles: profilesOf(config),
    clock: systemClock,
    crypto: webcrypto as Crypto,
    digest: nodeDigest,
  };
  const td = config.trustDomain;
  const now = () => deps.clock.now();
  const page = <R, V>(p: { items: R[]; nextCursor: string | null }, view: (r: R) => V) => ({
    items: p.items.map(view),
    nextCursor: p.nextCursor,
  });
  return {
    listDevices: async (q) =>
      page(
        await listDevices(deps, CLI_ACTOR, {
          ...q,
          afterId: q.after,
          expiringWithin: seconds(q.expiringWithin),
        }),
        (d) => deviceView(d, td),
      ),
    showDevice: async (id) => deviceDetailView(await showDevice(deps, CLI_ACTOR, id), td, now()),
    revokeDevice: async (id, reason, decommission, cascade) => {
      const r = await revokeDevice(deps, {
        deviceId: id,
        reason,
        status: decommission ? "decommissioned" : "revoked",
        cascade,
        actor: CLI_ACTOR,
      });
      return {
        device: deviceView(r.device, td),
        revokedSerials: r.serials,
        ...(r.appliances ? { appliances: r.appliances } : {}),
      };
    },
    reinstateDevice: async (id, note) =>
      deviceView(await reinstateDevice(deps, { deviceId: id, note, actor: CLI_ACTOR }), td),
    bindIdevid: async (id, certificate, profile) =>
      deviceIdevidView(
        await bindIdevid(
          {
            ...deps,
            idevidAnchors: manufacturerAnchors(dataDir, config),
            verifier: webCryptoVerifier(deps.crypto.subtle),
          },
          CLI_ACTOR,
          { deviceId: id, ...decodeCertificateText(certificate), ...(profile ? { profile } : {}) },
        ),
      ),
    showCertificate: async (serial) => certificateView(await getCertificate(deps, CLI_ACTOR, serial)),
    revokeCertificate: async (serial, reason) =>
      certificateView(await revokeCertificate(deps, { serial, reason, actor: CLI_ACTOR })),
    createTokens: async (batch, opts) => {
      const deviceIds =
        "deviceIds" in batch ? batch.deviceIds : batchDeviceIds(batch.devicePrefix, batch.start, batch.count);
      const created = await issueTokens(deps, CLI_ACTOR, {
        deviceIds,
        profile: opts.profile,
        ttl: seconds(opts.ttl),
        names: opts.names,
      });
      return created.map((t) => ({ ...t, expiresAt: t.expiresAt.toISOString() }));
    },
    listTokens: async (q) => page(await listTokens(deps, CLI_ACTOR, q), (t) => tokenView(t, now())),
    revokeToken: async (id) => tokenView(await revokeToken(deps, CLI_ACTOR, id), now()),
    listEnrollments: async (q) => page(await listEnrollments(deps, CLI_ACTOR, q), enrollmentView),
    decideEnrollment: async (id, decision, reason) =>
      enrollmentView(await decideEnrollment(deps, { id, decision, reason, actor: CLI_ACTOR })),
    listAudit: async (q) => page(await readAudit(deps, CLI_ACTOR, q), auditView),
    verifyAudit: () => verifyAuditChain(deps, CLI_ACTOR),
    createOperator: async (o) => {
      const r = await createOperator(deps, { name: o.name, role: o.role, ttl: seconds(o.ttl), actor: CLI_ACTOR });
      return { ...operatorView(r.operator), token: r.token };
    },
    listOperators: async () => (await listOperators(deps, CLI_ACTOR)).map(operatorView),
    revokeOperator: async (id) => operatorView(await revokeOperator(deps, id, CLI_ACTOR)),
    // Queued in the database; the server's fleet loop publishes them (its poll finds them).
    sendCommand: (command, t) =>
      issueCommands(deps, CLI_ACTOR, command, { ...t, expiringWithin: seconds(t.expiringWithin) }),
    listCommands: async (q) => page(await listCommands(deps, CLI_ACTOR, q), commandView),
    showCommand: async (opId) => commandView(await getCommand(deps, CLI_ACTOR, opId)),
    auditFleet: async (o) =>
      fleetAuditView(
        await runFleetAudit(deps, CLI_ACTOR, {
          expiringWithin: seconds(o.expiringWithin),
          notSeenFor: seconds(o.notSeenFor) ?? config.fleet.notSeenFor,
          cloneWindow: seconds(o.cloneWindow) ?? config.fleet.cloneWindow,
          cloneTakeovers: config.fleet.cloneTakeovers,
          limit: o.limit,
        }),
      ),
    setMetadata: async (id, change) => metadataView(await setDeviceMetadata(deps, CLI_ACTOR, id, change)),
    // Signing needs the CA key: opened for this command only (the passphrase as for serve).
    signCsr: (deviceId, profile, csr, o) =>
      withIssuer(dataDir, process.env, async (issuer) =>
        signedView(
          issuer,
          await signForDevice(issuer, CLI_ACTOR, {
            deviceId,
            profile,
            csr: decodeCsrText(csr),
            names: o?.names,
            validity: seconds(o?.validity),
          }),
          profile,
        ),
      ),
    issueWithKey: (deviceId, profile, o) =>
      withIssuer(dataDir, process.env, async (issuer) => {
        const issued = await issueWithGeneratedKey(issuer, CLI_ACTOR, {
          deviceId,
          profile,
          names: o?.names,
          validity: seconds(o?.validity),
        });
        return { ...signedView(issuer, issued, profile), privateKey: toPem("PRIVATE KEY", issued.privateKey) };
      }),
    expiring: async (q) =>
      page(
        await expiringReport(deps, CLI_ACTOR, { within: parseDuration(q.within), cursor: q.cursor, limit: q.limit }),
        expiringView,
      ),
    close: () => storage.close(),
  };
}
