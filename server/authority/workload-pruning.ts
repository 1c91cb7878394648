import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";

/** Workload SVIDs deleted per write set: one bounded transaction (one D1 batch) each. */
export const SVID_PRUNE_BATCH = 1000;
/** Write sets per run at most; what is left waits for the next run. */
export const SVID_PRUNE_MAX_BATCHES = 100;

export interface SvidPruneResult {
  /** SVID rows deleted by this run. */
  pruned: number;
  /** The cutoff: SVIDs whose notAfter is before it were eligible (now minus the retention). */
  before: Date;
  /** Write sets committed. */
  batches: number;
}

/**
 * Deletes workload X.509-SVIDs whose notAfter is older than `spiffe.svidRetention`
 * (and the claims on keys no remaining certificate holds), oldest first, `batch` rows
 * per write set, at most `maxBatches` write sets. An agent renewing hourly adds a row
 * per workload every hour; without this they would pile up forever.
 *
 * Only rows that are already expired go, so nothing changes for a certificate that is
 * still valid: a revoked SVID stays on the CRL (built from the revocation feed, which
 * this leaves alone) and in OCSP until well after its notAfter (RFC 5280 §3.3 lets an
 * entry leave the CRL once the certificate expired). The device's own certificates
 * are never deleted. Each write set carries its audit record (action
 * `workload.svids_pruned`, with the count), so a run that deletes one batch — the
 * usual case — is one record, and a run that finds nothing writes nothing.
 */
export async function pruneWorkloadSvids(
  deps: Pick<AuthorityDeps, "storage" | "clock" | "config">,
  opts: { batch?: number; maxBatches?: number } = {},
): Promise<SvidPruneResult> {
  const batch = opts.batch ?? SVID_PRUNE_BATCH;
  const maxBatches = opts.maxBatches ?? SVID_PRUNE_MAX_BATCHES;
  const now = deps.clock.now();
  const before = new Date(now.getTime() - deps.config.spiffe.svidRetention * 1000);
  let pruned = 0;
  let batches = 0;
  while (batches < maxBatches) {
    const serials = await deps.storage.expiredWorkloadSvids(before, batch);
    if (serials.length === 0) break;
    await deps.storage.apply([
      { kind: "pruneWorkloadSvids", serials, before },
      auditWrite({
        at: now,
        actor: "server",
        action: "workload.svids_pruned",
        outcome: "success",
        detail: {
          count: serials.length,
          expiredBefore: before.toISOString(),
          firstSerial: serials[0] ?? null,
          lastSerial: serials[serials.length - 1] ?? null,
        },
      }),
    ]);
    pruned += serials.length;
    batches++;
    if (serials.length < batch) break;
  }
  return { pruned, before, batches };
}
