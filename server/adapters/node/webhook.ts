import { createHmac } from "node:crypto";

/**
 * Expiry alerts (and whatever else the fleet loop notifies) as a JSON POST to an
 * operator's webhook. With a secret, `X-Edgeid-Signature: sha256=<hex HMAC of the body>`
 * lets the receiver check that edgeid sent it. A non-2xx answer or a timeout is a
 * failure: the caller retries later.
 */
export function webhookNotifier(o: {
  url: string;
  secret?: string;
  timeoutMs: number;
}): (payload: Record<string, unknown>) => Promise<void> {
  return async (payload) => {
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "edgeid" };
    if (o.secret) headers["x-edgeid-signature"] = `sha256=${createHmac("sha256", o.secret).update(body).digest("hex")}`;
    const res = await fetch(o.url, { method: "POST", headers, body, signal: AbortSignal.timeout(o.timeoutMs) });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new Error(`webhook ${new URL(o.url).host} answered ${res.status}`);
  };
}
