/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { ChainReport } from "../../../authority/audit-chain.ts";
import type { DashboardSession } from "../../../authority/sessions.ts";
import type { StoredAuditEvent } from "../../../ports/storage.ts";
import { plural } from "../format.ts";
import { BASE, Layout } from "../layout.tsx";
import { AuditTable, NextPage } from "./common.tsx";

/** The audit trail and its hash chain. */

export interface AuditFilters {
  actor?: string | undefined;
  action?: string | undefined;
  deviceId?: string | undefined;
}

export const AuditPage: FC<{
  session: DashboardSession;
  filters: AuditFilters;
  items: StoredAuditEvent[];
  nextCursor: string | null;
  chain?: ChainReport | undefined;
}> = ({ session, filters, items, nextCursor, chain }) => (
  <Layout title="Audit caller" session={session} nav="audit">
    <h1>Audit caller</h1>
    <p class="muted">
      Every issuance, change and refusal, newest first. Each record carries the hash of the one before it; verifying the
      chain proves that none was edited or removed.
    </p>
    {chain ? (
      <div class={`notice ${chain.ok ? "" : "error"}`} data-testid="chain">
        {chain.ok
          ? `The chain is intact: ${plural(chain.records, "record")} verified, up to record ${chain.lastId ?? "—"}.`
          : `The chain is broken at record ${chain.broken?.id}: ${chain.broken?.problem}.`}
      </div>
    ) : null}
    <form method="get" action={`${BASE}/audit`} class="filters">
      <div>
        <label for="audit-actor">Actor</label>
        <input type="text" id="audit-actor" name="actor" value={filters.actor ?? ""} maxlength={128} />
      </div>
      <div>
        <label for="audit-action">Action</label>
        <input type="text" id="audit-action" name="action" value={filters.action ?? ""} maxlength={64} />
      </div>
      <div>
        <label for="audit-device">Device</label>
        <input type="text" id="audit-device" name="deviceId" value={filters.deviceId ?? ""} maxlength={129} />
      </div>
      <button type="submit">Filter</button>
      <a href={`${BASE}/audit?verify=1`}>Verify the chain</a>
    </form>
    <AuditTable items={items} testId="audit-log" full />
    <NextPage path="audit" params={{ ...filters }} cursor={nextCursor} label="Older records" />
  </Layout>
);
