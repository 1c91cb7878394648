/**
 * Dashboard pages over the inventory benchmark's fleet: sign in with the operator token,
 * then time each page as the browser would fetch it (HTML, cookie, no cache): the first
 * view (the overview's counts are then kept 10 s), then 20 more. Part of
 * the inventory benchmark (`npm run bench -- --only-fleet --inventory-devices 100000`).
 */
import { type Agent, request } from "node:https";
import { percentile } from "./load.ts";
import { type ServerProcess, say } from "./server.ts";

function fetchPage(
  server: ServerProcess,
  agent: Agent,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; text: string; setCookie: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      {
        method: body === undefined ? "GET" : "POST",
        agent,
        headers: {
          ...headers,
          ...(body === undefined
            ? {}
            : {
                "content-type": "application/x-www-form-urlencoded",
                "content-length": String(Buffer.byteLength(body)),
              }),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text, setCookie: res.headers["set-cookie"] ?? [] }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export async function dashboardBench(
  server: ServerProcess,
  agent: Agent,
  token: string,
  ids: { deep: string; sample: string },
): Promise<string> {
  const login = await fetchPage(server, agent, "/dashboard/login", {}, new URLSearchParams({ token }).toString());
  const cookie = login.setCookie[0]?.split(";")[0];
  if (login.status !== 303 || !cookie) throw new Error(`dashboard sign-in: ${login.status}`);
  const headers = { cookie };
  // A deep page: the list's own "next page" link from a page near the end.
  const near = await fetchPage(server, agent, `/dashboard/devices?q=${ids.deep.slice(0, -2)}`, headers);
  const next = /href="([^"]+)" rel="next"/.exec(near.text)?.[1]?.replace(/&amp;/g, "&");
  const cases: [string, string][] = [
    ["overview (30 days)", "/dashboard"],
    ["overview (90 days)", "/dashboard?days=90"],
    ["devices, first page", "/dashboard/devices"],
    ["devices, search by id prefix", `/dashboard/devices?q=${ids.deep.slice(0, -3)}`],
    ["devices, state=revoked", "/dashboard/devices?status=revoked"],
    ["devices, profile=legacy", "/dashboard/devices?profile=legacy"],
    ["devices, expiring within 1d", "/dashboard/devices?expiring=1d"],
    ["devices, next page (keyset cursor)", next ?? "/dashboard/devices"],
    ["device page", `/dashboard/devices/${ids.sample}`],
    ["tokens", "/dashboard/tokens"],
    ["legacy report (90 days)", "/dashboard/legacy?profile=legacy&within=90d"],
  ];
  const summary: string[] = [];
  say("  dashboard pages (HTML, signed in):");
  for (const [name, path] of cases) {
    const t = performance.now();
    const warm = await fetchPage(server, agent, path, headers);
    const first = performance.now() - t;
    if (warm.status !== 200) throw new Error(`${path}: ${warm.status} ${warm.text.slice(0, 200)}`);
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await fetchPage(server, agent, path, headers);
      times.push(performance.now() - t0);
    }
    const sorted = Float64Array.from(times).sort();
    say(
      `    ${name}: ${(warm.text.length / 1024).toFixed(0)} KiB · first ${first.toFixed(1)} ms · then p50 ${percentile(sorted, 50).toFixed(1)} ms · p99 ${percentile(sorted, 99).toFixed(1)} ms`,
    );
    summary.push(`${name} ${first.toFixed(0)}/${percentile(sorted, 50).toFixed(1)} ms`);
  }
  return summary.join(" · ");
}
