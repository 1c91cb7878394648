/**
 * HTTP requests to fuzz the server with: EST (enroll, re-enroll over mutual TLS,
 * serverkeygen, cacerts, csrattrs), OCSP (POST and GET), the CRL, the operator API with
 * Bearer tokens, the dashboard login form (urlencoded and multipart), and plain protocol
 * abuse. Each is a real request mutated in its body (structure-aware, see
 * der-mutate.ts), its base64 framing, its headers and its HTTP framing.
 */
import { encodeBase64 } from "../server/pki/base64.ts";
import { concat } from "../server/pki/der.ts";
import { mutateBytes, mutateDer } from "./der-mutate.ts";
import type { Rng } from "./rng.ts";
import type { SeedCorpus } from "./seeds.ts";
import type { FuzzServer } from "./server.ts";
import { mutateBase64, mutatePem } from "./text-mutate.ts";

export interface HttpCase {
  /** What kind of request (for the per-kind counts). */
  kind: string;
  /** Sent over mutual TLS with the fuzz device's certificate. */
  mtls: boolean;
  /** The request bytes, in one or more writes. */
  chunks: Uint8Array[];
}

type Framing = "length" | "chunked" | "chunked-bad" | "none" | "length-short" | "length-long" | "both";

interface RequestShape {
  method: string;
  path: string;
  headers: [string, string][];
  body: Uint8Array;
  framing: Framing;
}

const enc = new TextEncoder();
const ascii = (s: string) => Buffer.from(s, "latin1");

/** The fuzz context: the server's material and which tokens remain. */
export interface HttpContext {
  server: FuzzServer;
  corpus: SeedCorpus;
}

/** Percent-encoding of the UTF-8 of `s` (a lone surrogate, which encodeURIComponent refuses, as U+FFFD). */
function percent(s: string): string {
  return Array.from(Buffer.from(s, "utf8"), (b) =>
    /[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b))
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, "0")}`,
  ).join("");
}

function spell(rng: Rng, name: string): string {
  switch (rng.int(12)) {
    case 0:
      return name.toUpperCase();
    case 1:
      return name.replace(/(^|-)([a-z])/g, (_, a: string, b: string) => a + b.toUpperCase());
    case 2:
      return `${name} `; // whitespace before the colon: a request smuggling vector, refused
    case 3:
      return name.replace(/-/g, "_");
    default:
      return name;
  }
}

const CONTENT_TYPES_PKCS10 = [
  "application/pkcs10",
  "APPLICATION/PKCS10",
  "application/pkcs10; charset=utf-8",
  "application/pkcs10;base64",
  " application/pkcs10 ",
  "application/pkcs10\t",
  "application/pkcs7-mime",
  "application/x-pkcs10",
  "text/plain",
  "",
  "multipart/form-data; boundary=x",
  'application/pkcs10; a="b;c"',
  "application/pkcs10, application/json",
  "ápplication/pkcs10",
];

function basic(rng: Rng, user: string, password: string): string {
  const raw = `${user}:${password}`;
  switch (rng.int(10)) {
    case 0:
      return `Basic ${mutateBase64(rng, enc.encode(raw))}`;
    case 1:
      return `basic   ${Buffer.from(raw).toString("base64")}`;
    case 2:
      return `Basic ${Buffer.from(raw.replace(":", "")).toString("base64")}`;
    case 3:
      return `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0x80]).toString("base64")}`;
    case 4:
      return "Basic";
    case 5:
      return `Basic ${Buffer.from(`${user}:${"p".repeat(rng.range(100, 6000))}`).toString("base64")}`;
    default:
      return `Basic ${Buffer.from(raw).toString("base64")}`;
  }
}

function authorization(rng: Rng, ctx: HttpContext): string | undefined {
  const tokens = ctx.server.tokens;
  const t = tokens.length > 0 ? rng.pick(tokens) : { deviceId: "nobody", token: "x" };
  switch (rng.int(9)) {
    case 0:
      return undefined;
    case 1:
      return `Bearer ${t.token}`;
    case 2:
      return `Bearer ${rng.pick(["", " ", "edo_", "x".repeat(5000), t.token.slice(0, 10), `${t.token}\u0000`])}`;
    case 3:
      return rng.pick(["Digest realm=x", "Negotiate YII=", "Basic", "Bearer", "  ", "Basic a b c", "bearer\tx"]);
    default:
      return basic(rng, rng.chance(0.9) ? t.deviceId : "other-device", rng.chance(0.8) ? t.token : "wrong-token");
  }
}

function estPath(rng: Rng, op: string): string {
  const label = rng.pick(["", "", "", "legacy/", "device/", "nope/", "%2e%2e/", `${"a".repeat(300)}/`, "gateway/"]);
  const path = `/.well-known/est/${label}${op}`;
  if (rng.chance(0.05)) return path.toUpperCase();
  if (rng.chance(0.05)) return `${path}?x=${"%".repeat(rng.range(1, 3))}`;
  if (rng.chance(0.03)) return `${path}/`;
  return path;
}

function csrBody(rng: Rng, csrs: Uint8Array[]): Uint8Array {
  const csr = rng.pick(csrs);
  switch (rng.int(12)) {
    case 0:
      return ascii(encodeBase64(csr, 76));
    case 1:
      return new Uint8Array(0);
    case 2:
      return csr; // raw DER, not base64
    case 3:
      return ascii(mutateBase64(rng, csr));
    default:
      return ascii(mutateBase64(rng, mutateDer(rng, csr)));
  }
}

function est(rng: Rng, ctx: HttpContext): RequestShape & { mtls: boolean; kind: string } {
  const op = rng.pick([
    "simpleenroll",
    "simpleenroll",
    "simpleenroll",
    "serverkeygen",
    "simplereenroll",
    "simplereenroll",
  ]);
  const mtls = op === "simplereenroll" ? rng.chance(0.9) : rng.chance(0.1);
  const csrs = op === "simplereenroll" ? ctx.server.reenrollCsrs.concat(ctx.corpus.csrs) : ctx.corpus.csrs;
  const headers: [string, string][] = [];
  const auth = op === "simplereenroll" && rng.chance(0.8) ? undefined : authorization(rng, ctx);
  if (auth !== undefined) headers.push([spell(rng, "authorization"), auth]);
  const ct = rng.chance(0.75) ? "application/pkcs10" : rng.pick(CONTENT_TYPES_PKCS10);
  if (!rng.chance(0.03)) headers.push([spell(rng, "content-type"), ct]);
  if (rng.chance(0.1)) headers.push(["content-transfer-encoding", rng.pick(["base64", "binary", "7bit", "x"])]);
  const method = rng.chance(0.95) ? "POST" : rng.pick(["GET", "PUT", "DELETE", "OPTIONS", "HEAD"]);
  return {
    method,
    path: estPath(rng, op),
    headers,
    body: csrBody(rng, csrs),
    framing: framing(rng),
    mtls,
    kind: `est.${op}`,
  };
}

function estGet(rng: Rng): RequestShape & { kind: string } {
  const op = rng.pick(["cacerts", "csrattrs", "unknown", "cacerts/x", ""]);
  return {
    method: rng.chance(0.9) ? "GET" : "POST",
    path: estPath(rng, op),
    headers: [],
    body: new Uint8Array(0),
    framing: "none",
    kind: "est.get",
  };
}

function ocspPost(rng: Rng, ctx: HttpContext): RequestShape & { kind: string } {
  const seed = rng.pick(ctx.server.ocsp.concat(ctx.corpus.ocsp));
  const body = rng.chance(0.1) ? seed : mutateDer(rng, seed);
  const ct = rng.pick([
    "application/ocsp-request",
    "application/ocsp-request",
    "application/ocsp-request",
    "APPLICATION/OCSP-REQUEST; x=y",
    "application/ocsp-response",
    "",
    "application/ocsp-request, text/plain",
  ]);
  return {
    method: "POST",
    path: "/pki/ocsp",
    headers: [[spell(rng, "content-type"), ct]],
    body,
    framing: framing(rng),
    kind: "ocsp.post",
  };
}

function ocspGet(rng: Rng, ctx: HttpContext): RequestShape & { kind: string } {
  const seed = rng.pick(ctx.server.ocsp);
  const der = rng.chance(0.1) ? seed : mutateDer(rng, seed);
  let b64 = rng.chance(0.6) ? encodeBase64(der) : mutateBase64(rng, der);
  switch (rng.int(5)) {
    case 0:
      b64 = percent(b64);
      break;
    case 1:
      b64 = b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      break;
    case 2:
      b64 = b64.replace(/[\s]/g, (c) => percent(c)).replace(/%/g, rng.pick(["%", "%%", "%zz", "%25"]));
      break;
    default:
      b64 = b64.replace(/[^A-Za-z0-9+/=%-]/g, (c) => percent(c));
  }
  if (rng.chance(0.02)) b64 = "A".repeat(rng.range(10_000, 40_000));
  return {
    method: "GET",
    path: `/pki/ocsp/${b64}`,
    headers: [],
    body: new Uint8Array(0),
    framing: "none",
    kind: "ocsp.get",
  };
}

function crl(rng: Rng): RequestShape & { kind: string } {
  const file = rng.pick([
    "issuing-p256.crl",
    "issuing-rsa.crl",
    "x.crl",
    "issuing-p256",
    "../edgeid.db",
    "%00.crl",
    `${"a".repeat(70)}.crl`,
  ]);
  const headers: [string, string][] = [];
  if (rng.chance(0.3)) headers.push(["if-none-match", rng.pick(['"1"', "*", '"', 'W/"1"', "x".repeat(3000)])]);
  return {
    method: rng.chance(0.9) ? "GET" : "HEAD",
    path: `/pki/crl/${file}`,
    headers,
    body: new Uint8Array(0),
    framing: "none",
    kind: "crl",
  };
}

function json(rng: Rng, value: unknown): Uint8Array {
  const text = JSON.stringify(value);
  if (rng.chance(0.6)) return enc.encode(text);
  const b = mutateBytes(rng, enc.encode(text));
  return rng.chance(0.1) ? concat([enc.encode("[".repeat(rng.range(100, 5000))), b]) : b;
}

function api(rng: Rng, ctx: HttpContext): RequestShape & { kind: string } {
  const bearer = rng.chance(0.6)
    ? ctx.server.adminToken
    : rng.pick(["edo_x", "", ctx.server.adminToken.slice(0, -1), "x".repeat(9000)]);
  const headers: [string, string][] = [
    [spell(rng, "authorization"), `${rng.pick(["Bearer", "bearer", "BEARER", "Basic", "Bearer  "])} ${bearer}`],
  ];
  const get = rng.pick([
    "/api/v1/devices",
    `/api/v1/devices?limit=${rng.pick(["1", "-1", "1e9", "x", "99999999999999999999"])}&cursor=${rng.pick(["", "abc", "%ff", "A".repeat(500)])}`,
    `/api/v1/devices/${rng.pick([ctx.server.device.deviceId, "x", "%00", "a".repeat(300), "..%2f"])}`,
    "/api/v1/audit?limit=5",
    `/api/v1/certificates/${rng.pick(["01", "zz", "0".repeat(100), Buffer.from(ctx.server.device.serial).toString("hex")])}`,
    "/api/v1/whoami",
    "/api/v1/openapi.json",
    "/api/v1/fleet/summary",
    `/api/v1/reports/expiring?within=${rng.pick(["1d", "x", "-1d", "99999999d"])}`,
    "/metrics",
  ]);
  if (rng.chance(0.5))
    return { method: "GET", path: get, headers, body: new Uint8Array(0), framing: "none", kind: "api.get" };
  headers.push([
    spell(rng, "content-type"),
    rng.pick([
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/json; charset=latin1",
      "",
    ]),
  ]);
  const which = rng.int(3);
  if (which === 0) {
    const body = json(rng, {
      certificate: rng.chance(0.5)
        ? ctx.server.issuingPem
        : mutatePem(rng, mutateDer(rng, rng.pick(ctx.corpus.certificates))),
      ...(rng.chance(0.3) ? { profile: rng.pick(["device", "x", 1, null]) } : {}),
    });
    return {
      method: "POST",
      path: `/api/v1/devices/fuzz-idevid-${rng.int(1000)}/idevid`,
      headers,
      body,
      framing: framing(rng),
      kind: "api.idevid",
    };
  }
  if (which === 1) {
    const body = json(rng, {
      count: rng.pick([1, 0, -1, 1e9, "1", null, 2.5]),
      devicePrefix: rng.pick(["fuzz-api-", "", "x".repeat(200), "ü"]),
      profile: rng.pick(["device", "nope", 7]),
      ttl: rng.pick(["1h", "0s", "x", "99999d"]),
    });
    return { method: "POST", path: "/api/v1/tokens", headers, body, framing: framing(rng), kind: "api.tokens" };
  }
  const body = json(rng, {
    deviceId: rng.pick([ctx.server.device.deviceId, "x", ""]),
    name: rng.pick(["rotate", "ca-update", "x"]),
    payload: {},
  });
  return { method: "POST", path: "/api/v1/commands", headers, body, framing: framing(rng), kind: "api.commands" };
}

function login(rng: Rng, ctx: HttpContext): RequestShape & { kind: string } {
  const token = rng.chance(0.2) ? ctx.server.adminToken : rng.pick(["", "edo_x", "x".repeat(3000)]);
  const next = rng.pick(["/dashboard", "//evil.example", "/dashboard/../../etc", "https://x", ""]);
  if (rng.chance(0.5)) {
    const body = enc.encode(
      `token=${percent(token)}&next=${percent(next)}${rng.chance(0.2) ? "&token=a&token=b" : ""}`,
    );
    return {
      method: "POST",
      path: "/dashboard/login",
      headers: [
        [
          "content-type",
          rng.pick(["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=iso-8859-1"]),
        ],
      ],
      body: rng.chance(0.8) ? body : mutateBytes(rng, body),
      framing: framing(rng),
      kind: "dashboard.urlencoded",
    };
  }
  const boundary = rng.pick(["xyz", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a".repeat(71), "", '"quoted"', "b d"]);
  const part = (name: string, value: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${rng.chance(0.2) ? '; filename="t.txt"\r\nContent-Type: application/octet-stream' : ""}\r\n\r\n${value}\r\n`;
  let text = `${part("token", token)}${part("next", next)}--${boundary}--\r\n`;
  if (rng.chance(0.2)) text = `${part("token", token).repeat(rng.range(2, 2000))}--${boundary}--\r\n`;
  if (rng.chance(0.2)) text = text.slice(0, rng.int(text.length));
  let body: Uint8Array = enc.encode(text);
  if (rng.chance(0.3)) body = mutateBytes(rng, body);
  const ct = rng.pick([
    `multipart/form-data; boundary=${boundary}`,
    "multipart/form-data",
    `multipart/form-data; boundary="${boundary}"`,
    `multipart/mixed; boundary=${boundary}`,
  ]);
  return {
    method: "POST",
    path: "/dashboard/login",
    headers: [["content-type", ct]],
    body,
    framing: framing(rng),
    kind: "dashboard.multipart",
  };
}

function framing(rng: Rng): Framing {
  const r = rng.int(40);
  if (r < 28) return "length";
  if (r < 33) return "chunked";
  if (r < 35) return "chunked-bad";
  if (r < 37) return "none";
  if (r < 38) return "length-short";
  if (r < 39) return "length-long";
  return "both";
}

function chunked(rng: Rng, body: Uint8Array, bad: boolean): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.length; ) {
    const n = Math.min(body.length - at, rng.range(1, 700));
    out.push(
      ascii(`${n.toString(16)}${rng.chance(0.05) ? ";ext=1" : ""}\r\n`),
      body.subarray(at, at + n),
      ascii("\r\n"),
    );
    at += n;
  }
  if (bad) {
    const r = rng.int(5);
    if (r === 0) out.push(ascii("zz\r\n"));
    else if (r === 1) out.push(ascii("ffffffffffffffff\r\n"));
    else if (r === 2) out.push(ascii("5\r\nab\r\n0\r\n\r\n"));
    else if (r === 3) out.push(ascii(`0\r\n${"x-trailer: y\r\n".repeat(rng.range(1, 3000))}\r\n`));
    else out.push(ascii("-1\r\n\r\n"));
  } else {
    out.push(ascii("0\r\n\r\n"));
  }
  return out;
}

function serialize(rng: Rng, r: RequestShape): Uint8Array[] {
  const head: string[] = [
    `${r.method} ${r.path} ${rng.chance(0.98) ? "HTTP/1.1" : rng.pick(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", "HTTP/9"])}`,
  ];
  if (!rng.chance(0.02))
    head.push(`${spell(rng, "host")}: ${rng.chance(0.95) ? "localhost" : rng.pick(["", "a b", "x".repeat(300)])}`);
  for (const [k, v] of r.headers) head.push(`${k}: ${v}`);
  if (rng.chance(0.05)) head.push(`x-fuzz: ${"y".repeat(rng.pick([100, 9000, 20000]))}`);
  if (rng.chance(0.03)) for (let i = rng.range(50, 300); i > 0; i--) head.push(`x-h${i}: ${i}`);
  if (rng.chance(0.03)) head.push(...r.headers.map(([k, v]) => `${k}: ${v}`));
  let bodyChunks: Uint8Array[] = [r.body];
  const len = r.body.length;
  switch (r.framing) {
    case "length":
      head.push(`${spell(rng, "content-length")}: ${len}`);
      break;
    case "length-short":
      head.push(`content-length: ${Math.max(0, len - rng.range(1, 10))}`);
      break;
    case "length-long":
      // more than is sent: the server waits for the rest until its request timeout; the
      // client gives up first. Kept rare.
      head.push(`content-length: ${len + rng.range(1, 10)}`);
      break;
    case "chunked":
    case "chunked-bad":
      head.push(
        `${spell(rng, "transfer-encoding")}: ${rng.chance(0.9) ? "chunked" : rng.pick(["Chunked", "gzip, chunked", "chunked, identity", "x"])}`,
      );
      bodyChunks = chunked(rng, r.body, r.framing === "chunked-bad");
      break;
    case "both":
      head.push(`content-length: ${len}`, "transfer-encoding: chunked");
      bodyChunks = chunked(rng, r.body, false);
      break;
    case "none":
      if (len > 0)
        head.push(
          rng.pick([
            "content-length: ",
            "content-length: -1",
            "content-length: 1e3",
            `content-length: ${len}, ${len}`,
            `content-length: 0${len}`,
          ]),
        );
      break;
  }
  head.push("connection: close", "", "");
  const headBytes = ascii(head.join("\r\n"));
  const body = concat(bodyChunks);
  // Usually one write; sometimes the head and body, or tiny pieces.
  if (rng.chance(0.9) || body.length > 64 * 1024) return [concat([headBytes, body])];
  const all = concat([headBytes, body]);
  const out: Uint8Array[] = [];
  for (let at = 0; at < all.length; ) {
    const n = rng.range(1, 400);
    out.push(all.subarray(at, at + n));
    at += n;
  }
  return out.slice(0, 64).concat(out.length > 64 ? [concat(out.slice(64))] : []);
}

function garbage(rng: Rng): HttpCase {
  const lines = [
    "GET / HTTP/1.1\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
    "GET /pki/ocsp/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
    `GET /${"a".repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    "GET /\u0000 HTTP/1.1\r\n\r\n",
    "\r\n\r\n\r\n",
    "GET / HTTP/1.1\nHost: x\n\n",
    "POST /pki/ocsp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/ocsp-request\r\n\r\n1\r\n0\r\n",
  ];
  const base = ascii(rng.pick(lines));
  return { kind: "raw", mtls: false, chunks: [rng.chance(0.5) ? base : mutateBytes(rng, base)] };
}

function huge(rng: Rng, ctx: HttpContext): HttpCase {
  const size = rng.pick([64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024]);
  const fill = rng.chance(0.5)
    ? ascii("A".repeat(size))
    : concat([ascii(encodeBase64(rng.pick(ctx.corpus.csrs))), new Uint8Array(size).fill(0x20)]);
  const path = rng.pick([estPath(rng, "simpleenroll"), "/pki/ocsp", "/api/v1/tokens", "/dashboard/login"]);
  const ct =
    path === "/pki/ocsp"
      ? "application/ocsp-request"
      : path.includes("est")
        ? "application/pkcs10"
        : "application/json";
  const chunkedBody = rng.chance(0.4);
  const head = ascii(
    `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${ct}\r\nAuthorization: Bearer ${ctx.server.adminToken}\r\n` +
      (chunkedBody ? "Transfer-Encoding: chunked\r\n" : `Content-Length: ${fill.length}\r\n`) +
      "Connection: close\r\n\r\n",
  );
  const body = chunkedBody ? concat([ascii(`${fill.length.toString(16)}\r\n`), fill, ascii("\r\n0\r\n\r\n")]) : fill;
  return { kind: "huge", mtls: false, chunks: [concat([head, body])] };
}

/** One HTTP case, from its own generator. */
export function httpCase(rng: Rng, ctx: HttpContext): HttpCase {
  const r = rng.int(100);
  if (r < 3) return huge(rng, ctx);
  if (r < 8) return garbage(rng);
  let shape: RequestShape & { kind: string; mtls?: boolean };
  if (r < 45) shape = est(rng, ctx);
  else if (r < 50) shape = estGet(rng);
  else if (r < 62) shape = ocspPost(rng, ctx);
  else if (r < 72) shape = ocspGet(rng, ctx);
  else if (r < 75) shape = crl(rng);
  else if (r < 92) shape = api(rng, ctx);
  else shape = login(rng, ctx);
  return { kind: shape.kind, mtls: shape.mtls ?? false, chunks: serialize(rng, shape) };
}
