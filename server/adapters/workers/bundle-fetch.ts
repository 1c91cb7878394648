import type { Authority } from "../../authority/authority.ts";
import { MAX_FOREIGN_BUNDLE_BYTES } from "../../authority/federation.ts";
import type { Config } from "../../config/schema.ts";

type Target = Config["federation"][number];

/** Reads at most `max` bytes of a body; more is refused (the stream is cancelled). */
async function boundedText(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > max) throw new Error(`bundle is larger than ${max} bytes`);
  const reader = res.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new Error(`bundle is larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/**
 * The Worker's federation refresh, run by the Cron Trigger: each https_web target whose
 * copy is due (or not held) is fetched with the runtime's fetch (the platform's CAs;
 * `caFile` and https_spiffe need the Node server, which can pin the endpoint's chain),
 * within 10 s and 1 MiB, and stored by the core only if it is a sane bundle.
 */
export async function refreshFederatedBundles(
  authority: Authority,
  targets: readonly Target[],
  doFetch: typeof fetch,
  log: (entry: Record<string, unknown>) => void,
): Promise<number> {
  const held = new Map((await authority.deps.storage.listFederatedBundles()).map((b) => [b.trustDomain, b]));
  const now = authority.now().getTime();
  let refreshed = 0;
  for (const t of targets) {
    if ((held.get(t.trustDomain)?.refreshAt.getTime() ?? 0) > now) continue;
    if (t.profile !== "https_web" || t.caFile) {
      log({ level: "warn", msg: "federation target needs the Node server", trustDomain: t.trustDomain });
      continue;
    }
    try {
      const res = await doFetch(t.bundleEndpointUrl, {
        headers: { accept: "application/json" },
        signal: AbortSignal.timeout(10_000),
      });
      if (res.status !== 200) throw new Error(`bundle endpoint answered ${res.status}`);
      const text = await boundedText(res, MAX_FOREIGN_BUNDLE_BYTES);
      await authority.trustBundles.storeFederated(t.trustDomain, t.bundleEndpointUrl, text);
      refreshed++;
    } catch (err) {
      log({
        level: "warn",
        msg: "federated bundle refresh failed; the copy held stays",
        trustDomain: t.trustDomain,
        error: String(err),
      });
    }
  }
  return refreshed;
}
