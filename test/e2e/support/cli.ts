/**
 * The edgeid CLI (bin/edgeid.mjs) and its JSON views: tokens, devices, audit.
 */
import { expect } from "vitest";
import { EDGEID_BIN, type RunOptions, runOk } from "./process.ts";

/** The edgeid CLI (bin/edgeid.mjs: dist/ when it is current, else the sources through tsx). */
export const edgeid = (args: readonly string[], opts?: RunOptions) =>
  runOk(process.execPath, [EDGEID_BIN, ...args], opts);

export interface TokenRow {
  deviceId: string;
  profile: string;
  tokenId: string;
  token: string;
  expiresAt: string;
}

function jsonLines<T>(text: string): T[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

export async function cliCreateToken(
  dataDir: string,
  deviceId: string,
  opts: { profile?: string; ttl?: string } = {},
): Promise<TokenRow> {
  const args = ["token", "create", "--data", dataDir, "--device", deviceId, "--json"];
  if (opts.profile) args.push("--profile", opts.profile);
  if (opts.ttl) args.push("--ttl", opts.ttl);
  const rows = jsonLines<TokenRow>((await edgeid(args)).stdout);
  expect(rows).toHaveLength(1);
  return rows[0] as TokenRow;
}

export async function cliCreateTokenBatch(dataDir: string, prefix: string, count: number): Promise<TokenRow[]> {
  const r = await edgeid([
    "token",
    "create",
    "--data",
    dataDir,
    "--count",
    String(count),
    "--device-prefix",
    prefix,
    "--json",
  ]);
  return jsonLines<TokenRow>(r.stdout);
}

export interface AuditView {
  id: number | string;
  at: string;
  actor: string;
  action: string;
  outcome: string;
  serial: string | null;
  detail: { reason?: string; [k: string]: unknown } | null;
}

export interface DeviceView {
  id: string;
  profile: string;
  status: string;
  currentSerial: string | null;
  identity: string;
  lastEnrolledAt: string | null;
  certificates: {
    serial: string;
    status: string;
    profile: string;
    keyType: string;
    notBefore: string;
    notAfter: string;
    fingerprint: string;
    method: string;
    replacesSerial: string | null;
  }[];
  tokens: { id: string; profile: string; usedAt: string | null; usedSerial: string | null; expiresAt: string }[];
  audit: AuditView[];
}

export async function showDevice(dataDir: string, id: string): Promise<DeviceView> {
  const r = await edgeid(["devices", "show", id, "--data", dataDir, "--json"]);
  return JSON.parse(r.stdout.trim()) as DeviceView;
}

export async function listDevices(dataDir: string): Promise<{ id: string; status: string; profile: string }[]> {
  return jsonLines((await edgeid(["devices", "list", "--data", dataDir, "--json"])).stdout);
}

/** The device's audit trail has a denied record for `action` with this reason. */
export async function expectDeniedAudit(dataDir: string, deviceId: string, action: string, reason: string) {
  const device = await showDevice(dataDir, deviceId);
  const denied = device.audit.filter((a) => a.outcome === "denied" && a.action === action);
  expect(
    denied.map((a) => a.detail?.reason),
    `audit of ${deviceId}: ${JSON.stringify(device.audit)}`,
  ).toContain(reason);
  return device;
}
