/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession } from "../../../authority/sessions.ts";
import { formatDuration } from "../../../config/duration.ts";
import type { WorkloadEntryRecord } from "../../../ports/storage.ts";
import { workloadEntryView } from "../../http/views.ts";
import { when } from "../format.ts";
import { BASE, Csrf, canAct, deviceHref, Layout } from "../layout.tsx";
import { Head, NextPage, RowAction } from "./common.tsx";

/** Workload registration entries: the list (all, or those that apply to one device), the register form, delete. */
export const WorkloadsPage: FC<{
  session: DashboardSession;
  trustDomain: string;
  profiles: string[];
  items: WorkloadEntryRecord[];
  device: string | undefined;
  nextCursor: string | null;
  notice?: string | undefined;
}> = ({ session, trustDomain, profiles, items, device, nextCursor, notice }) => {
  const act = canAct(session);
  return (
    <Layout title="Workloads" session={session} nav="workloads" notice={notice}>
      <h1>Workload entries</h1>
      <p class="muted">
        Which workload, on which devices, gets which SPIFFE ID. The agent on each device attests its workloads by these
        selectors and serves their X.509- and JWT-SVIDs over the SPIFFE Workload API.
      </p>
      {act ? (
        <form method="post" action={`${BASE}/workloads`} class="card" data-testid="workload-register">
          <h2>Register an entry</h2>
          <Csrf session={session} />
          <div class="field">
            <label for="wl-parent-kind">Parent</label>
            <select id="wl-parent-kind" name="parentKind">
              <option value="device" selected>
                one device
              </option>
              <option value="profile">every device of a profile</option>
              <option value="prefix">every device whose id starts with</option>
            </select>{" "}
            <input
              type="text"
              id="wl-parent"
              name="parent"
              required
              maxlength={128}
              size={24}
              aria-label="device id, profile or prefix"
              placeholder={profiles[0] ? `gw-001, ${profiles[0]}, plant-a-` : "gw-001"}
            />
          </div>
          <div class="field">
            <label for="wl-name">Name (the last part of the SPIFFE ID)</label>
            <input type="text" id="wl-name" name="name" required maxlength={255} size={24} />
          </div>
          <div class="field">
            <label for="wl-selectors">Selectors, one per line (a workload must have all of them)</label>
            <textarea
              id="wl-selectors"
              name="selectors"
              required
              maxlength={20000}
              placeholder={"unix:uid:1000\nunix:sha256:<64 hex>\nsystemd:unit:web.service"}
            />
          </div>
          <div class="field">
            <label for="wl-ttl">SVID lifetime</label>
            <input type="text" id="wl-ttl" name="ttl" value="1h" size={6} maxlength={16} />
          </div>
          <div class="field">
            <label for="wl-audiences">JWT-SVID audiences, one per line (none: no JWT-SVIDs)</label>
            <textarea id="wl-audiences" name="jwtAudiences" maxlength={20000} />
          </div>
          <div class="field">
            <label>
              <input type="checkbox" name="fleetWide" value="1" /> Fleet-wide SPIFFE ID (
              <code>spiffe://{trustDomain}/workload/&lt;name&gt;</code> on every device)
            </label>
          </div>
          <button type="submit">Register</button>
        </form>
      ) : null}
      <h2>Entries</h2>
      <form method="get" action={`${BASE}/workloads`} class="filters">
        <div>
          <label for="filter-device">Applies to device</label>
          <input type="text" id="filter-device" name="device" value={device ?? ""} maxlength={129} />
        </div>
        <button type="submit">Filter</button>
      </form>
      <table data-testid="workloads">
        <Head cols={["Entry", "Parent", "SPIFFE ID", "Selectors", "TTL", "JWT audiences", "Created", act && ""]} />
        <tbody>
          {items.map((e) => {
            const v = workloadEntryView(e, trustDomain);
            return (
              <tr data-entry={v.id}>
                <td>
                  <code>{v.id}</code>
                </td>
                <td>
                  {v.parent.kind === "device" ? (
                    <>
                      device <a href={deviceHref(v.parent.value)}>{v.parent.value}</a>
                    </>
                  ) : (
                    `${v.parent.kind === "prefix" ? "prefix" : "profile"} ${v.parent.value}`
                  )}
                </td>
                <td>
                  <code>{v.spiffeId}</code>
                </td>
                <td>
                  {v.selectors.map((s) => (
                    <div>
                      <code>{s}</code>
                    </div>
                  ))}
                </td>
                <td>{formatDuration(v.ttlSeconds)}</td>
                <td>{v.jwtAudiences.length ? v.jwtAudiences.join(", ") : "—"}</td>
                <td>
                  {when(v.createdAt)} <span class="muted">{v.createdBy}</span>
                </td>
                {act ? (
                  <td>
                    <RowAction
                      session={session}
                      action={`${BASE}/workloads/${encodeURIComponent(v.id)}/delete`}
                      label="Delete"
                    />
                  </td>
                ) : null}
              </tr>
            );
          })}
        </tbody>
      </table>
      {items.length === 0 ? <p class="muted">No entries.</p> : null}
      <NextPage path="workloads" params={{ device }} cursor={nextCursor} />
    </Layout>
  );
};
