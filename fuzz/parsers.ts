/**
 * The in-process half: every parser in server/pki that reads untrusted bytes, fed
 * mutants of real inputs at a high rate. A parser may throw only the error types it
 * documents for bad input; any other exception (TypeError, RangeError, …) is a finding,
 * and so is a CsrError that says an unexpected exception was masked.
 */
import { webcrypto } from "node:crypto";
import { performance } from "node:perf_hooks";
import { Base64Error, decodeBase64, encodeBase64 } from "../server/pki/base64.ts";
import { readCertificate } from "../server/pki/certificate.ts";
import { CsrError, parseCsr, verifyCsrSignature } from "../server/pki/csr.ts";
import { bytesEqual, DerError, decodeOid, readTlv, toHex } from "../server/pki/der.ts";
import { derToP1363 } from "../server/pki/ecdsa-signature.ts";
import { describeKey, subjectPublicKeyBits } from "../server/pki/keys.ts";
import { canonicalIp, ipOctets, isDnsName } from "../server/pki/names.ts";
import { OcspError, parseOcspRequest } from "../server/pki/ocsp.ts";
import { parsePem } from "../server/pki/pem.ts";
import { readSpki, SpkiError } from "../server/pki/spki.ts";
import { SignatureAlgorithmError, webCryptoVerifier } from "../server/pki/verify.ts";
import { mutateDer } from "./der-mutate.ts";
import { inputRng, type Rng } from "./rng.ts";
import type { SeedCorpus } from "./seeds.ts";
import { mutateBase64, mutatePem } from "./text-mutate.ts";

type ErrorClass = abstract new (...args: never[]) => Error;

export interface ParserTarget {
  name: string;
  /** The error types the parser documents for bad input. */
  allowed: readonly ErrorClass[];
  /** The input for this generator: bytes, or text for the text parsers. */
  make(rng: Rng, corpus: SeedCorpus): Uint8Array | string;
  run(input: Uint8Array | string): unknown;
}

const latin1 = new TextDecoder("latin1");
const asBytes = (input: Uint8Array | string) => (typeof input === "string" ? new TextEncoder().encode(input) : input);

/** Walks a whole DER tree with the strict reader, decoding every OID on the way. */
function walkDer(input: Uint8Array, depth = 0): void {
  let offset = 0;
  while (offset < input.length) {
    const el = readTlv(input, offset);
    if (el.tag === 0x06) decodeOid(el.content);
    if (el.tag & 0x20 && depth < 200) walkDer(el.content, depth + 1);
    offset = el.end;
  }
}

function anyDer(rng: Rng, c: SeedCorpus): Uint8Array {
  const pool = rng.pick([c.csrs, c.spkis, c.signatures, c.ocsp, c.certificates]);
  return mutateDer(rng, rng.pick(pool));
}

/** The message parseCsr gives when it caught something other than its own or the DER reader's errors. */
export const MASKED_CSR_ERROR = "not a DER PKCS#10 certification request";

export const TARGETS: ParserTarget[] = [
  { name: "der", allowed: [DerError], make: anyDer, run: (b) => walkDer(asBytes(b)) },
  {
    name: "csr",
    allowed: [CsrError],
    make: (rng, c) => mutateDer(rng, rng.pick(c.csrs)),
    run: (b) => {
      try {
        return parseCsr(asBytes(b));
      } catch (e) {
        if (e instanceof CsrError && e.message === MASKED_CSR_ERROR) {
          throw new TypeError(`parseCsr masked an unexpected exception as CsrError("${MASKED_CSR_ERROR}")`);
        }
        throw e;
      }
    },
  },
  {
    name: "spki",
    allowed: [SpkiError],
    make: (rng, c) => mutateDer(rng, rng.pick(c.spkis)),
    run: (b) => readSpki(asBytes(b)),
  },
  {
    name: "describe-key",
    allowed: [DerError],
    make: (rng, c) => mutateDer(rng, rng.pick(c.spkis)),
    run: (b) => {
      describeKey(asBytes(b));
      return subjectPublicKeyBits(asBytes(b));
    },
  },
  {
    name: "ecdsa-signature",
    allowed: [DerError],
    make: (rng, c) => mutateDer(rng, rng.pick(c.signatures)),
    run: (b) => derToP1363(asBytes(b), 32),
  },
  {
    name: "ocsp-request",
    allowed: [OcspError],
    make: (rng, c) => mutateDer(rng, rng.pick(c.ocsp)),
    run: (b) => parseOcspRequest(asBytes(b), 16),
  },
  {
    name: "base64",
    allowed: [Base64Error],
    make: (rng, c) => mutateBase64(rng, rng.chance(0.2) ? rng.bytes(rng.size(300)) : rng.pick(c.csrs)),
    run: (s) => decodeBase64(typeof s === "string" ? s : latin1.decode(s)),
  },
  {
    name: "pem",
    allowed: [Base64Error],
    make: (rng, c) => mutatePem(rng, mutateDer(rng, rng.pick(c.certificates))),
    run: (s) => parsePem(typeof s === "string" ? s : latin1.decode(s)),
  },
  {
    name: "certificate",
    allowed: [DerError],
    make: (rng, c) => mutateDer(rng, rng.pick(c.certificates)),
    run: (b) => readCertificate(asBytes(b)),
  },
  {
    name: "names",
    allowed: [],
    make: (rng) => {
      const pieces = [
        "1",
        "255",
        "256",
        "0",
        ":",
        "::",
        ".",
        "a",
        "-",
        "ffff",
        "127.0.0.1",
        "%",
        "[",
        "]",
        "x".repeat(64),
      ];
      let s = "";
      for (let i = rng.size(40); i > 0; i--) s += rng.pick(pieces);
      return s;
    },
    run: (s) => {
      const t = typeof s === "string" ? s : latin1.decode(s);
      return [isDnsName(t), ipOctets(t), canonicalIp(t)];
    },
  },
];

const BUILTIN_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError];

/** Whether `err` is one of the documented error types (JavaScript's own never are). */
export function isAllowed(target: ParserTarget, err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (BUILTIN_ERRORS.some((c) => err instanceof c)) return false;
  return target.allowed.some((c) => err instanceof c);
}

export interface Finding {
  where: string;
  index: number;
  error: string;
  /** The input, hex (bytes) or JSON (text). */
  input: string;
  count: number;
}

export interface Slowest {
  where: string;
  index: number;
  ms: number;
  size: number;
  input: string;
}

export interface InProcessResult {
  inputs: number;
  seconds: number;
  perTarget: Record<string, number>;
  findings: Finding[];
  slowest: Slowest | undefined;
  /** CSR mutants that parsed and were verified with WebCrypto. */
  verified: number;
}

export function describeInput(input: Uint8Array | string): string {
  return typeof input === "string" ? JSON.stringify(input) : toHex(input);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : `non-Error thrown: ${String(err)}`;
}

/** One input of a run, regenerated from the seed and its index. */
export function inProcessInput(seed: number, index: number, corpus: SeedCorpus) {
  const rng = inputRng(seed, index);
  const target = TARGETS[index % TARGETS.length] as ParserTarget;
  return { target, input: target.make(rng, corpus) };
}

export async function runInProcess(opts: {
  seed: number;
  corpus: SeedCorpus;
  inputs: number;
  seconds?: number;
  /** Verify the signature of every Nth CSR mutant that parses (0: never; default 5). */
  verifyEvery?: number;
  progress?: (done: number) => void;
}): Promise<InProcessResult> {
  const findings = new Map<string, Finding>();
  const perTarget: Record<string, number> = {};
  const verifier = webCryptoVerifier(webcrypto.subtle as unknown as SubtleCrypto);
  const verifyEvery = opts.verifyEvery ?? 5;
  let slowest: Slowest | undefined;
  let verified = 0;
  let csrParsed = 0;
  const record = (where: string, index: number, err: unknown, input: Uint8Array | string) => {
    const error = errorText(err);
    const key = `${where} ${error.split("\n")[0]}`;
    const seen = findings.get(key);
    if (seen) seen.count++;
    else findings.set(key, { where, index, error, input: describeInput(input), count: 1 });
  };
  const start = performance.now();
  const deadline = opts.seconds ? start + opts.seconds * 1000 : Number.POSITIVE_INFINITY;
  let done = 0;
  for (; done < opts.inputs && (done % 256 !== 0 || performance.now() < deadline); done++) {
    const { target, input } = inProcessInput(opts.seed, done, opts.corpus);
    perTarget[target.name] = (perTarget[target.name] ?? 0) + 1;
    const t0 = performance.now();
    let parsed: unknown;
    try {
      parsed = target.run(input);
    } catch (err) {
      if (!isAllowed(target, err)) record(target.name, done, err, input);
    }
    let ms = performance.now() - t0;
    if (slowest && ms > slowest.ms) {
      // A new slowest input is timed again, and the faster time counts: a GC pause or a
      // busy machine is not the input's doing.
      const t1 = performance.now();
      try {
        target.run(input);
      } catch {
        // as above
      }
      ms = Math.min(ms, performance.now() - t1);
    }
    if (!slowest || ms > slowest.ms) {
      slowest = { where: target.name, index: done, ms, size: input.length, input: describeInput(input).slice(0, 256) };
    }
    if (target.name === "csr" && parsed && verifyEvery > 0 && ++csrParsed % verifyEvery === 0) {
      verified++;
      try {
        await verifyCsrSignature(parsed as ReturnType<typeof parseCsr>, verifier);
      } catch (err) {
        if (!(err instanceof CsrError) && !(err instanceof SignatureAlgorithmError)) {
          record("csr-verify", done, err, input);
        }
      }
    }
    if (
      target.name === "base64" &&
      parsed instanceof Uint8Array &&
      !bytesEqual(decodeBase64(encodeBase64(parsed)), parsed)
    ) {
      record("base64-roundtrip", done, new Error("decode(encode(x)) differs from x"), input);
    }
    if (opts.progress && done % 10_000 === 0) opts.progress(done);
  }
  return {
    inputs: done,
    seconds: (performance.now() - start) / 1000,
    perTarget,
    findings: [...findings.values()],
    slowest,
    verified,
  };
}
