/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession } from "../../../authority/sessions.ts";
import type { TokenRecord } from "../../../ports/storage.ts";
import { tokenView } from "../../http/views.ts";
import { when } from "../format.ts";
import { BASE, Badge, Csrf, canAct, deviceHref, Layout } from "../layout.tsx";
import { Head, NextPage, RowAction } from "./common.tsx";

/** Bootstrap tokens: the list, the create form, the tokens just created. */

export interface CreatedTokenRow {
  deviceId: string;
  profile: string;
  tokenId: string;
  token: string;
  expiresAt: Date;
}

export const TokensPage: FC<{
  session: DashboardSession;
  profiles: string[];
  items: TokenRecord[];
  state: string | undefined;
  deviceId: string | undefined;
  nextCursor: string | null;
  now: Date;
  created?: CreatedTokenRow[] | undefined;
  notice?: string | undefined;
}> = ({ session, profiles, items, state, deviceId, nextCursor, now, created, notice }) => {
  const act = canAct(session);
  const profileSelect = (id: string) => (
    <select id={id} name="profile">
      {profiles.map((p) => (
        <option value={p} selected={p === "device"}>
          {p}
        </option>
      ))}
    </select>
  );
  return (
    <Layout title="Tokens" session={session} nav="tokens" notice={notice}>
      <h1>Bootstrap tokens</h1>
      {created ? (
        <div class="notice warn" data-testid="created-tokens">
          <p>
            <strong>Copy {created.length === 1 ? "this token" : "these tokens"} now:</strong> the secret is shown once
            and stored only as a hash.
          </p>
          <table>
            <Head cols={["Device", "Profile", "Token", "Expires"]} />
            <tbody>
              {created.map((t) => (
                <tr>
                  <td>{t.deviceId}</td>
                  <td>{t.profile}</td>
                  <td>
                    <span class="secret">{t.token}</span>
                  </td>
                  <td>{when(t.expiresAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {act ? (
        <div class="grid2">
          <form method="post" action={`${BASE}/tokens`} class="card" data-testid="token-single">
            <h2>One device</h2>
            <Csrf session={session} />
            <input type="hidden" name="mode" value="single" />
            <div class="field">
              <label for="single-device">Device id</label>
              <input type="text" id="single-device" name="deviceId" required maxlength={64} />
            </div>
            <div class="field">
              <label for="single-profile">Profile</label>
              {profileSelect("single-profile")}
            </div>
            <div class="field">
              <label for="single-ttl">Valid for</label>
              <input type="text" id="single-ttl" name="ttl" value="7d" size={6} maxlength={16} />
            </div>
            <div class="field">
              <label for="single-dns">DNS names for its certificates (comma-separated, optional)</label>
              <input type="text" id="single-dns" name="dns" maxlength={2000} size={40} />
            </div>
            <div class="field">
              <label for="single-ip">IP addresses (comma-separated, optional)</label>
              <input type="text" id="single-ip" name="ip" maxlength={2000} size={40} />
            </div>
            <button type="submit">Create token</button>
          </form>
          <form method="post" action={`${BASE}/tokens`} class="card" data-testid="token-bulk">
            <h2>Many devices</h2>
            <Csrf session={session} />
            <input type="hidden" name="mode" value="bulk" />
            <div class="field">
              <label for="bulk-ids">Device ids, one per line…</label>
              <textarea id="bulk-ids" name="deviceIds" maxlength={700000} />
            </div>
            <div class="field">
              <label for="bulk-prefix">…or a numbered series: prefix, first number, count</label>
              <input type="text" id="bulk-prefix" name="prefix" maxlength={48} size={14} placeholder="gw-" />{" "}
              <input type="number" name="start" value="1" min="0" aria-label="first number" />{" "}
              <input type="number" name="count" min="1" max="10000" aria-label="count" />
            </div>
            <div class="field">
              <label for="bulk-profile">Profile</label>
              {profileSelect("bulk-profile")}
            </div>
            <div class="field">
              <label for="bulk-ttl">Valid for</label>
              <input type="text" id="bulk-ttl" name="ttl" value="30d" size={6} maxlength={16} />
            </div>
            <button type="submit" name="format" value="csv">
              Create and download CSV
            </button>{" "}
            <button type="submit" name="format" value="html" class="secondary">
              Create and show
            </button>
          </form>
        </div>
      ) : null}
      <h2>Tokens</h2>
      <form method="get" action={`${BASE}/tokens`} class="filters">
        <div>
          <label for="filter-device">Device id</label>
          <input type="text" id="filter-device" name="deviceId" value={deviceId ?? ""} maxlength={129} />
        </div>
        <div>
          <label for="filter-state">State</label>
          <select id="filter-state" name="state">
            <option value="">any</option>
            {["unused", "used", "revoked", "expired"].map((s) => (
              <option value={s} selected={state === s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Filter</button>
      </form>
      <table data-testid="tokens">
        <Head cols={["Token id", "Device", "Profile", "State", "Created", "Expires", "Certificate", act && ""]} />
        <tbody>
          {items.map((t) => {
            const v = tokenView(t, now);
            return (
              <tr data-token={v.id}>
                <td>
                  <code>{v.id}</code>
                </td>
                <td>
                  <a href={deviceHref(v.deviceId)}>{v.deviceId}</a>
                </td>
                <td>{v.profile}</td>
                <td>
                  <Badge value={v.state} />
                </td>
                <td>
                  {when(v.createdAt)} <span class="muted">{v.createdBy}</span>
                </td>
                <td>{when(v.expiresAt)}</td>
                <td>{v.usedSerial ? <code>{v.usedSerial}</code> : "—"}</td>
                {act ? (
                  <td>
                    {v.state === "unused" ? (
                      <RowAction
                        session={session}
                        action={`${BASE}/tokens/${encodeURIComponent(v.id)}/revoke`}
                        label="Revoke"
                      />
                    ) : null}
                  </td>
                ) : null}
              </tr>
            );
          })}
        </tbody>
      </table>
      <NextPage path="tokens" params={{ state, deviceId }} cursor={nextCursor} />
    </Layout>
  );
};
