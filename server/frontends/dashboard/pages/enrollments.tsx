/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import type { DashboardSession } from "../../../authority/sessions.ts";
import type { PendingEnrollment } from "../../../ports/storage.ts";
import { BASE, Layout } from "../layout.tsx";
import { NextPage, PendingTable } from "./common.tsx";

/** Enrollment requests that wait for a decision. */

export const EnrollmentsPage: FC<{
  session: DashboardSession;
  status: string;
  items: PendingEnrollment[];
  nextCursor: string | null;
  notice?: string | undefined;
}> = ({ session, status, items, nextCursor, notice }) => (
  <Layout title="Approvals" session={session} nav="enrollments" notice={notice}>
    <h1>Enrollment requests</h1>
    <p>
      {["pending", "approved", "rejected", "issued"].map((s) => (
        <>{s === status ? <strong>{s}</strong> : <a href={`${BASE}/enrollments?status=${s}`}>{s}</a>} </>
      ))}
    </p>
    <PendingTable session={session} items={items} back={`${BASE}/enrollments`} />
    <NextPage path="enrollments" params={{ status }} cursor={nextCursor} />
  </Layout>
);
