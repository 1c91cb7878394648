/** A listener option (`--listen`, `--public-listen`, `--mqtt-listen`, `listen` in the configuration): HOST:PORT, IPv6 in brackets. */
export function parseListen(listen: string, option = "--listen"): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  if (!m) throw new Error(`${option} must be HOST:PORT (got "${listen}")`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  return { host: (m[1] ?? m[2]) as string, port };
}
