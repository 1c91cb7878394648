/**
 * MQTT 3.1.1 sessions for the embedded broker (over TLS, with the fuzz device's
 * certificate): CONNECT, PUBLISH (status documents, events, random topics),
 * SUBSCRIBE, UNSUBSCRIBE, PINGREQ, with malformed remaining lengths, wrong fixed-header
 * flags, oversized packets, random topics and damaged bytes.
 */
import { concat } from "../server/pki/der.ts";
import { mutateBytes } from "./der-mutate.ts";
import type { Rng } from "./rng.ts";

const enc = new TextEncoder();

/** The remaining length as MQTT writes it (1..4 bytes, 7 bits each). */
function varint(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Uint8Array.from(out);
}

function str(s: string | Uint8Array): Uint8Array {
  const b = typeof s === "string" ? enc.encode(s) : s;
  return concat([Uint8Array.of((b.length >> 8) & 0xff, b.length & 0xff), b]);
}

function packet(rng: Rng, first: number, body: Uint8Array): Uint8Array {
  let header = first;
  let length = varint(body.length);
  if (rng.chance(0.1)) {
    switch (rng.int(6)) {
      case 0:
        header = (first & 0xf0) | rng.int(16); // wrong flags
        break;
      case 1:
        length = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x7f); // five bytes: malformed
        break;
      case 2:
        length = varint(body.length + rng.range(1, 100)); // longer than sent
        break;
      case 3:
        length = varint(Math.max(0, body.length - rng.range(1, 10))); // shorter
        break;
      case 4:
        length = Uint8Array.of(0xff, 0xff, 0xff, 0x7f); // 268435455: the largest
        break;
      default:
        header = rng.pick([0x00, 0xf0, 0x70, 0x50]); // reserved or unexpected types
    }
  }
  return concat([Uint8Array.of(header), length, body]);
}

function topic(rng: Rng, deviceId: string): Uint8Array {
  const own = `edgeid/v1/devices/${deviceId}`;
  switch (rng.int(12)) {
    case 0:
      return rng.bytes(rng.size(80));
    case 1:
      return enc.encode(rng.pick(["#", "+", "edgeid/#", "edgeid/v1/+/+/status", "$SYS/x", "", "/", "//", "a\u0000b"]));
    case 2:
      return enc.encode(`edgeid/v1/devices/other-${rng.int(10)}/status`);
    case 3:
      return enc.encode(`${own}/cmd/rotate`);
    case 4:
      return enc.encode(`${own}/${"x/".repeat(rng.range(1, 3000))}`);
    case 5:
      return Uint8Array.from([...enc.encode(own), 0xc3, 0x28]); // invalid UTF-8
    case 6:
      return enc.encode(`${own}/cmd-result/${rng.pick(["op1", "", "a".repeat(100), "+"])}`);
    case 7:
      return enc.encode(`${own}/events`);
    default:
      return enc.encode(`${own}/status`);
  }
}

function statusPayload(rng: Rng): Uint8Array {
  const doc: Record<string, unknown> = {
    v: rng.pick([1, 1, 2, "1", null]),
    state: rng.pick(["online", "offline", "rotating", "degraded", "revoked", "lost", "x", 1]),
    session: rng.pick([1, 7, -1, 1e308, "x", 2 ** 53 + 1]),
    ts: rng.pick([new Date(0).toISOString(), "2026-13-45T99:99:99Z", "x", 0]),
    cert: rng.pick([{ serial: "01", notAfter: "2030-01-01T00:00:00Z", keyAlg: "P-256" }, null, "x", { serial: "zz" }]),
    nextRenewAt: rng.pick(["2030-01-01T00:00:00Z", 1, null]),
    agent: rng.pick([{ version: "1.0" }, { version: "x".repeat(5000) }, []]),
  };
  if (rng.chance(0.1)) doc.extra = "y".repeat(rng.range(1, 200_000));
  let b: Uint8Array = enc.encode(JSON.stringify(doc));
  if (rng.chance(0.3)) b = mutateBytes(rng, b);
  if (rng.chance(0.05)) b = enc.encode(`${"[".repeat(rng.range(1000, 100_000))}`);
  return b;
}

function connect(rng: Rng, deviceId: string): Uint8Array {
  const level = rng.chance(0.9) ? 4 : rng.pick([3, 5, 0, 255]);
  const proto = rng.chance(0.95) ? "MQTT" : rng.pick(["MQIsdp", "", "MQTT\u0000"]);
  let flags = 0x02;
  const payload: Uint8Array[] = [str(rng.chance(0.9) ? deviceId : rng.pick(["", "other", "x".repeat(70_000)]))];
  if (rng.chance(0.2)) {
    flags |= 0x04 | (rng.int(3) << 3) | (rng.chance(0.5) ? 0x20 : 0);
    payload.push(
      topic(rng, deviceId).length < 65_536 ? str(topic(rng, deviceId)) : str("x"),
      str(statusPayload(rng).subarray(0, 60_000)),
    );
  }
  if (rng.chance(0.1)) {
    flags |= 0xc0;
    payload.push(str("user"), str("pass"));
  }
  if (rng.chance(0.05)) flags = rng.int(256);
  const body = concat([
    str(proto),
    Uint8Array.of(level, flags),
    Uint8Array.of(0, rng.pick([0, 1, 60, 255])),
    ...payload,
  ]);
  return packet(rng, 0x10, body);
}

function publish(rng: Rng, deviceId: string): Uint8Array {
  const qos = rng.pick([0, 1, 1, 2, 3]);
  const retain = rng.chance(0.3) ? 1 : 0;
  const t = topic(rng, deviceId);
  const id = qos > 0 ? Uint8Array.of(rng.int(256), rng.range(1, 255)) : new Uint8Array(0);
  const payload = rng.chance(0.05) ? new Uint8Array(rng.pick([300_000, 1_100_000])) : statusPayload(rng);
  return packet(
    rng,
    0x30 | (qos << 1) | retain | (rng.chance(0.05) ? 0x08 : 0),
    concat([str(t.subarray(0, 65_535)), id, payload]),
  );
}

function subscribe(rng: Rng, deviceId: string, unsubscribe: boolean): Uint8Array {
  const filters: Uint8Array[] = [];
  for (let i = rng.range(0, rng.chance(0.05) ? 500 : 3); i > 0; i--) {
    const f = rng.chance(0.5) ? enc.encode(`edgeid/v1/devices/${deviceId}/cmd/+`) : topic(rng, deviceId);
    filters.push(str(f.subarray(0, 65_535)));
    if (!unsubscribe) filters.push(Uint8Array.of(rng.pick([0, 1, 2, 3, 0x80])));
  }
  const id = Uint8Array.of(0, rng.pick([0, 1, 77]));
  return packet(rng, unsubscribe ? 0xa2 : 0x82, concat([id, ...filters]));
}

/** The packets of one session. */
export function mqttPackets(rng: Rng, deviceId: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  if (!rng.chance(0.05)) out.push(connect(rng, deviceId));
  for (let i = rng.range(0, 6); i > 0; i--) {
    const r = rng.int(10);
    if (r < 5) out.push(publish(rng, deviceId));
    else if (r < 7) out.push(subscribe(rng, deviceId, false));
    else if (r < 8) out.push(subscribe(rng, deviceId, true));
    else if (r < 9) out.push(rng.pick([Uint8Array.of(0xc0, 0), Uint8Array.of(0xe0, 0), Uint8Array.of(0x40, 2, 0, 1)]));
    else out.push(rng.bytes(rng.size(200)));
  }
  if (rng.chance(0.1) && out.length > 0) {
    const i = rng.int(out.length);
    out[i] = mutateBytes(rng, out[i] as Uint8Array);
  }
  return out;
}
