/**
 * A real `mosquitto` broker configured by `edgeid mqtt mosquitto-config`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { connect as connectTcp } from "node:net";
import { join } from "node:path";
import { expect } from "vitest";
import { edgeid } from "./cli.ts";
import { eventually, freePort } from "./process.ts";

export interface RunningMosquitto {
  url: string;
  /** The files `edgeid mqtt mosquitto-config` wrote (config, ca, crl, …). */
  files: Record<string, string>;
  process: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/**
 * A real `mosquitto` on a free port with the configuration `edgeid mqtt
 * mosquitto-config` writes for the data directory (into `<work>/broker`), ready when its
 * TLS port accepts connections. `readers`: service identities with read access.
 */
export async function startMosquitto(dataDir: string, work: string, readers: string[] = []): Promise<RunningMosquitto> {
  const port = await freePort();
  const out = await edgeid([
    "mqtt",
    "mosquitto-config",
    "--data",
    dataDir,
    "--out",
    join(work, "broker"),
    "--listen",
    `127.0.0.1:${port}`,
    ...readers.flatMap((r) => ["--reader", r]),
    "--json",
  ]);
  const { url, files } = JSON.parse(out.stdout) as { url: string; files: Record<string, string> };
  const child = spawn("mosquitto", ["-c", files.config as string], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout?.on("data", (c: Buffer) => {
    log += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    log += c.toString();
  });
  await eventually(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connectTcp(port, "127.0.0.1");
        socket.once("connect", () => {
          socket.destroy();
          resolve(true);
        });
        socket.once("error", () => resolve(child.exitCode !== null));
      }),
    (ready) => ready,
  );
  expect(child.exitCode, log).toBeNull();
  return {
    url,
    files,
    process: child,
    log: () => log,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
