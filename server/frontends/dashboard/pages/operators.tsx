/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession } from "../../../authority/sessions.ts";
import type { OperatorRecord } from "../../../ports/storage.ts";
import { when } from "../format.ts";
import { BASE, Badge, Csrf, Layout } from "../layout.tsx";
import { Head, RowAction } from "./common.tsx";

/** Operators and their tokens (admin). */

export const OperatorsPage: FC<{
  session: DashboardSession;
  items: OperatorRecord[];
  now: Date;
  created?: { name: string; role: string; token: string } | undefined;
  notice?: string | undefined;
}> = ({ session, items, now, created, notice }) => (
  <Layout title="Operators" session={session} nav="operators" notice={notice}>
    <h1>Operators</h1>
    {created ? (
      <div class="notice warn" data-testid="created-operator">
        <p>
          <strong>Copy the token of {created.name} now</strong> ({created.role}): it is shown once and stored only as a
          hash.
        </p>
        <p>
          <span class="secret">{created.token}</span>
        </p>
      </div>
    ) : null}
    <form method="post" action={`${BASE}/operators`} class="filters card">
      <Csrf session={session} />
      <div>
        <label for="op-name">Name</label>
        <input type="text" id="op-name" name="name" required maxlength={64} />
      </div>
      <div>
        <label for="op-role">Role</label>
        <select id="op-role" name="role">
          {["auditor", "operator", "admin"].map((r) => (
            <option value={r}>{r}</option>
          ))}
        </select>
      </div>
      <div>
        <label for="op-ttl">Valid for (empty: until revoked)</label>
        <input type="text" id="op-ttl" name="ttl" size={8} maxlength={16} placeholder="90d" />
      </div>
      <button type="submit">Create operator</button>
    </form>
    <table data-testid="operators">
      <Head cols={["Name", "Role", "State", "Created", "Expires", ""]} />
      <tbody>
        {items.map((o) => {
          const state = o.revokedAt
            ? "revoked"
            : o.expiresAt && o.expiresAt.getTime() <= now.getTime()
              ? "expired"
              : "active";
          return (
            <tr data-operator={o.id}>
              <td>
                {o.name} <code class="muted">{o.id}</code>
              </td>
              <td>{o.role}</td>
              <td>
                <Badge value={state} />
              </td>
              <td>
                {when(o.createdAt)} <span class="muted">{o.createdBy ?? ""}</span>
              </td>
              <td>{when(o.expiresAt)}</td>
              <td>
                {state === "active" && `operator:${o.id}` !== session.actor.id ? (
                  <RowAction
                    session={session}
                    action={`${BASE}/operators/${encodeURIComponent(o.id)}/revoke`}
                    label="Revoke"
                  />
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  </Layout>
);
