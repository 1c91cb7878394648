/**
 * HTTPS requests with the `curl` CLI, EST operations over it, and the one-line refusal shape.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import { nextFileSeq, run } from "./process.ts";
import type { TestServer } from "./server.ts";

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  /** Header blocks of every response curl saw (several with --anyauth). */
  rawHeaders: string;
  body: Buffer;
  text: string;
  /** curl's -v trace (stderr). */
  trace: string;
}

export interface CurlOptions {
  method?: "GET" | "POST";
  /** Request body (string or bytes); sent with --data-binary. */
  body?: string | Buffer;
  contentType?: string | null;
  basic?: { user: string; password: string };
  /** curl --anyauth instead of --basic: credentials only after a 401 challenge. */
  anyauth?: boolean;
  bearer?: string;
  cert?: string;
  key?: string;
  cacert?: string;
  extraArgs?: string[];
}

/** One HTTPS request with the curl CLI; trusts only the given CA file. */
export async function curl(work: string, url: string, opts: CurlOptions = {}): Promise<HttpResponse> {
  const n = nextFileSeq();
  const headerFile = join(work, `curl-${n}.headers`);
  const bodyFile = join(work, `curl-${n}.body`);
  const args = ["-sS", "-v", "--max-time", "20", "-D", headerFile, "-o", bodyFile, "-w", "%{http_code}"];
  if (opts.cacert) args.push("--cacert", opts.cacert);
  if (opts.basic) {
    args.push(opts.anyauth ? "--anyauth" : "--basic", "-u", `${opts.basic.user}:${opts.basic.password}`);
  }
  if (opts.bearer) args.push("--oauth2-bearer", opts.bearer);
  if (opts.cert) args.push("--cert", opts.cert);
  if (opts.key) args.push("--key", opts.key);
  if (opts.body !== undefined) {
    const reqFile = join(work, `curl-${n}.request`);
    await writeFile(reqFile, opts.body);
    args.push("--data-binary", `@${reqFile}`);
    // Large bodies: no "Expect: 100-continue" round trip.
    args.push("-H", "Expect:");
  }
  if (opts.contentType !== undefined)
    args.push("-H", `Content-Type:${opts.contentType === null ? "" : ` ${opts.contentType}`}`);
  if (opts.method) args.push("-X", opts.method);
  args.push(...(opts.extraArgs ?? []), url);
  const r = await run("curl", args);
  if (r.code !== 0) throw new Error(`curl ${url} failed (exit ${r.code}): ${r.stderr}`);
  const rawHeaders = await readFile(headerFile, "utf8");
  const body = await readFile(bodyFile).catch(() => Buffer.alloc(0));
  return {
    status: Number(r.stdout.trim()),
    headers: lastHeaderBlock(rawHeaders),
    rawHeaders,
    body,
    text: body.toString("utf8"),
    trace: r.stderr,
  };
}

function lastHeaderBlock(raw: string): Record<string, string> {
  const blocks = raw.split(/\r?\n\r?\n/).filter((b) => b.trim() !== "");
  const last = blocks[blocks.length - 1] ?? "";
  const headers: Record<string, string> = {};
  for (const line of last.split(/\r?\n/).slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

export interface EstPostOptions extends Omit<CurlOptions, "method" | "cacert"> {
  /** EST label (profile); default none. */
  label?: string;
}

/** POST to an EST operation with a PKCS#10 body (Content-Type application/pkcs10 unless given). */
export function estPost(
  server: TestServer,
  work: string,
  op: "simpleenroll" | "simplereenroll" | "serverkeygen",
  body: string | Buffer,
  opts: EstPostOptions = {},
): Promise<HttpResponse> {
  const { label, ...rest } = opts;
  const url = `${server.est}/${label ? `${label}/` : ""}${op}`;
  return curl(work, url, {
    contentType: "application/pkcs10",
    ...rest,
    body,
    method: "POST",
    cacert: server.rootPemFile,
  });
}

export function estGet(server: TestServer, work: string, path: string): Promise<HttpResponse> {
  return curl(work, `${server.est}/${path}`, { cacert: server.rootPemFile });
}

/** A refusal: the status, text/plain, and exactly one line of text. */
export function expectOneLineError(r: HttpResponse, status: number): void {
  expect(r.status, `body: ${r.text}`).toBe(status);
  expect(r.headers["content-type"]).toMatch(/^text\/plain/);
  expect(r.text.endsWith("\n")).toBe(true);
  const line = r.text.slice(0, -1);
  expect(line.length).toBeGreaterThan(0);
  expect(line).not.toMatch(/[\r\n]/);
}
