/**
 * The commands an operator sends the agent over MQTT (docs/mqtt-contract.md): `rotate`
 * renews now, `revoked` enters the revoked state, `ca-update` refreshes the CA bundle, `workloads-changed` refetches the workload
 * registration entries (and SVIDs) at once.
 */
import type { AgentDeps } from "./deps.ts";

export const COMMANDS = ["rotate", "revoked", "ca-update", "workloads-changed"] as const;

export type Command = (typeof COMMANDS)[number];

export const isCommand = (name: string): name is Command => (COMMANDS as readonly string[]).includes(name);

export interface CommandResult {
  ok: boolean;
  error?: string;
}

/** What the commands act on: the running agent. */
export interface CommandTarget {
  /** Renew now; also restarts a stopped agent. */
  renewNow(): void;
  enterRevoked(by: string, message: string): void;
  refreshCa(): Promise<unknown>;
  /** Refetch the workload entries now (no-op without the Workload API). */
  workloadsChanged(): Promise<void>;
}

/** Carries out one command; the reporter publishes the result under the command's opId. */
export async function runCommand(
  target: CommandTarget,
  command: Command,
  body: Record<string, unknown>,
  log: AgentDeps["log"],
): Promise<CommandResult> {
  log("info", "command", { command, opId: body.opId });
  if (command === "rotate") {
    target.renewNow();
    return { ok: true };
  }
  if (command === "revoked") {
    target.enterRevoked("mqtt", typeof body.reason === "string" ? body.reason : "revoked by the operator");
    return { ok: true };
  }
  if (command === "workloads-changed") {
    await target.workloadsChanged();
    return { ok: true };
  }
  await target.refreshCa();
  return { ok: true };
}
