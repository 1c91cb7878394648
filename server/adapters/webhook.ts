/**
 * Expiry alerts (and whatever else the fleet loop notifies) as a JSON POST to an
 * operator's webhook. With a secret, `X-Edgeid-Signature: sha256=<hex HMAC of the body>`
 * lets the receiver check that edgeid sent it. A non-2xx answer or a timeout is a
 * failure: the caller retries later. fetch and WebCrypto only: Node and Workers alike.
 */
export function webhookNotifier(o: {
  url: string;
  secret?: string;
  timeoutMs: number;
}): (payload: Record<string, unknown>) => Promise<void> {
  const key = o.secret
    ? crypto.subtle.importKey("raw", new TextEncoder().encode(o.secret), { name: "HMAC", hash: "SHA-256" }, false, [
        "sign",
      ])
    : undefined;
  return async (payload) => {
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "edgeid" };
    if (key) {
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await key, new TextEncoder().encode(body)));
      headers["x-edgeid-signature"] = `sha256=${[...mac].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    }
    const res = await fetch(o.url, { method: "POST", headers, body, signal: AbortSignal.timeout(o.timeoutMs) });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new Error(`webhook ${new URL(o.url).host} answered ${res.status}`);
  };
}
