/**
 * Waits until `check` holds, looking again every few milliseconds, for at most `ms`:
 * for what another party (a broker, a server, the agent's loop) does in its own time.
 */
export async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
