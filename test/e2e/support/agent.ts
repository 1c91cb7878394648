/**
 * The device agent (device-client) run from its TypeScript sources.
 */
import { join } from "node:path";
import { ROOT } from "./process.ts";
import type { TestServer } from "./server.ts";

/** The agent's command line, run from its TypeScript sources. */
export const AGENT_BIN = join(ROOT, "device-client/bin/edgeid-agent.mjs");
export const AGENT_ENV = { ...process.env, EDGEID_AGENT_FROM_SOURCE: "1" };

/** `edgeid-agent enroll` arguments: a device with a token, pinned to the root's SHA-256, into `dir`. */
export function agentEnrollArgs(
  server: TestServer,
  rootFingerprint: string,
  deviceId: string,
  token: string,
  dir: string,
  extra: string[] = [],
): string[] {
  return [
    "enroll",
    "--server",
    server.url,
    "--ca-fingerprint",
    `sha256:${rootFingerprint}`,
    "--device",
    deviceId,
    "--token",
    token,
    "--dir",
    dir,
    ...extra,
  ];
}
