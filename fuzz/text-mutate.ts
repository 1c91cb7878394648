/** Mutations of the text framings around DER: base64 (RFC 7030 §4), PEM. */
import { encodeBase64 } from "../server/pki/base64.ts";
import type { Rng } from "./rng.ts";

const WHITESPACE = [" ", "\t", "\r\n", "\n", "\r", "\v", "\f", "\u00a0", "\u2028"];
const ODD = ["-", "_", ".", "*", "%", "\u0000", "\u00ff", "\u0100", "é", "😀", "=", "==", "===", "\\", '"'];

/** base64 of `der`, wrapped, padded or damaged the ways clients and attackers do. */
export function mutateBase64(rng: Rng, der: Uint8Array): string {
  let s = encodeBase64(der, rng.pick([0, 0, 64, 76, 16]));
  const rounds = rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(s.length + 1);
    switch (rng.int(9)) {
      case 0:
        s = s.slice(0, at) + rng.pick(WHITESPACE) + s.slice(at);
        break;
      case 1:
        s = s.slice(0, at) + rng.pick(ODD) + s.slice(at);
        break;
      case 2:
        s = s.replace(/=+$/, "");
        break;
      case 3:
        s = `${s}${"=".repeat(rng.range(1, 5))}`;
        break;
      case 4:
        s = s.replace(/\+/g, "-").replace(/\//g, "_");
        break;
      case 5:
        s = s.slice(0, at);
        break;
      case 6:
        s = `${rng.pick(WHITESPACE).repeat(rng.range(1, 200))}${s}${rng.pick(WHITESPACE).repeat(rng.range(1, 3))}`;
        break;
      case 7:
        s = s.slice(0, at) + s.slice(at + 1);
        break;
      default:
        s = s.replace(/\r\n/g, rng.pick(["\n", "\r", " ", "\r\r\n", ""]));
        break;
    }
  }
  return s;
}

/** A PEM text around base64, with the armor lines damaged sometimes. */
export function mutatePem(rng: Rng, der: Uint8Array, label = "CERTIFICATE"): string {
  const body = rng.chance(0.7) ? encodeBase64(der, 64).replace(/\r\n/g, "\n") : mutateBase64(rng, der);
  const begin = rng.chance(0.9)
    ? `-----BEGIN ${label}-----`
    : rng.pick(["-----BEGIN -----", `----BEGIN ${label}-----`, `-----BEGIN ${label.toLowerCase()}-----`]);
  const end = rng.chance(0.9) ? `-----END ${label}-----` : rng.pick(["", `-----END X-----`, `-----END ${label}----`]);
  const block = `${begin}\n${body}\n${end}\n`;
  // Repetition up to about 64 KiB: what a request body may carry.
  const times = rng.chance(0.05) ? rng.range(2, Math.max(2, Math.floor(65_536 / block.length))) : 1;
  let out = block.repeat(times);
  if (rng.chance(0.1)) out = `${begin}\n`.repeat(rng.range(2, 3600)) + out;
  if (rng.chance(0.2)) out = `junk before\n${out}junk after`;
  return out;
}
