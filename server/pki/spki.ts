import { bytesEqual, concat, decodeOid, encodeOid, sequence, TAG, tlv, unsignedInteger } from "./der.ts";
import { id_Ed25519, id_ecPublicKey, rsaEncryption, secp192r1, secp256r1, secp384r1, secp521r1 } from "./oids.ts";

/**
 * Canonical SubjectPublicKeyInfo: one spelling per public key, so that "one key, one
 * identity" can compare keys by the SHA-256 of their SPKI bytes.
 *
 * ```asn1
 * SubjectPublicKeyInfo ::= SEQUENCE {                 -- RFC 5280 §4.1.2.7
 *   algorithm            AlgorithmIdentifier,
 *   subjectPublicKey     BIT STRING }
 * AlgorithmIdentifier ::= SEQUENCE {                  -- RFC 5280 §4.1.1.2
 *   algorithm            OBJECT IDENTIFIER,
 *   parameters           ANY DEFINED BY algorithm OPTIONAL }
 *
 * ECParameters ::= CHOICE {                           -- RFC 5480 §2.1.1
 *   namedCurve           OBJECT IDENTIFIER }          -- implicitCurve and specifiedCurve MUST NOT be used
 * ECPoint ::= OCTET STRING                            -- RFC 5480 §2.2: SEC 1 §2.3.3, 0x04 ‖ X ‖ Y uncompressed
 *
 * rsaEncryption parameters: NULL                      -- RFC 3279 §2.3.1 / RFC 8017 A.1
 * RSAPublicKey ::= SEQUENCE {                         -- RFC 8017 A.1.1
 *   modulus              INTEGER,  -- n
 *   publicExponent       INTEGER } -- e
 *
 * id-Ed25519: parameters MUST be absent; the key is the 32-octet public key  -- RFC 8410 §3, §4
 * ```
 *
 * The same key has other spellings that WebCrypto and OpenSSL import without complaint:
 * a compressed or hybrid EC point (`openssl ec -conv_form compressed`), rsaEncryption
 * without its NULL, an RSAPublicKey with padded INTEGERs or bytes after it, BER lengths.
 * {@link readSpki} parses an SPKI into its algorithm and key material, re-encodes that
 * canonically, and compares the bytes; a difference is reported with the first
 * non-canonical thing it found, in words a device operator can act on.
 */

/** What is non-canonical, for tests and the audit trail; the message says it for people. */
export type NonCanonicalKind =
  | "not_der"
  | "trailing_data"
  | "bit_string_unused_bits"
  | "ec_parameters"
  | "ec_point_compressed"
  | "ec_point_hybrid"
  | "ec_point_length"
  | "rsa_parameters"
  | "rsa_integer"
  | "ed25519_parameters";

export interface NonCanonical {
  kind: NonCanonicalKind;
  /** Says what is non-canonical and what to send instead. */
  message: string;
}

/** Key material as it goes into the canonical encoding. */
export type PublicKeyMaterial =
  | { kind: "EC"; curve: string; x: Uint8Array; y: Uint8Array }
  /** Unsigned big-endian magnitudes without leading zero bytes. */
  | { kind: "RSA"; modulus: Uint8Array; exponent: Uint8Array }
  | { kind: "Ed25519"; key: Uint8Array };

export type SpkiReading =
  | { canonical: true; material: PublicKeyMaterial }
  | {
      canonical: false;
      problem: NonCanonical;
      /** The canonical spelling of the same key, where it follows from the bytes without curve arithmetic. */
      canonicalSpki?: Uint8Array;
    };

/** Not a SubjectPublicKeyInfo of a key type we read (EC named curves, RSA, Ed25519). */
export class SpkiError extends Error {
  override name = "SpkiError";
}

/** Coordinate lengths, ⌈log2(p)/8⌉ (SEC 1 §2.3.3), of the named curves we know. */
const COORDINATE_LENGTH: Record<string, number> = {
  [secp192r1]: 24,
  [secp256r1]: 32,
  [secp384r1]: 48,
  [secp521r1]: 66,
};

const CURVE_NAME: Record<string, string> = {
  [secp192r1]: "P-192",
  [secp256r1]: "P-256",
  [secp384r1]: "P-384",
  [secp521r1]: "P-521",
};

const NULL = Uint8Array.of(TAG.NULL, 0);

/** The canonical DER of a public key. */
export function encodeSpki(material: PublicKeyMaterial): Uint8Array {
  switch (material.kind) {
    case "EC":
      return spki(
        sequence(encodeOid(id_ecPublicKey), encodeOid(material.curve)),
        concat([Uint8Array.of(0x04), material.x, material.y]),
      );
    case "RSA":
      return spki(
        sequence(encodeOid(rsaEncryption), NULL),
        sequence(unsignedInteger(material.modulus), unsignedInteger(material.exponent)),
      );
    case "Ed25519":
      return spki(sequence(encodeOid(id_Ed25519)), material.key);
  }
}

/** SEQUENCE { algorithm, BIT STRING with 0 unused bits }. */
function spki(algorithm: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return sequence(algorithm, tlv(TAG.BIT_STRING, Uint8Array.of(0), publicKey));
}

/**
 * Reads an SPKI and says whether it is the canonical spelling of its key. Throws
 * SpkiError when it is not a well-formed SPKI of an EC (named curve), RSA or Ed25519 key.
 *
 * @remarks Lengths are read leniently (BER long forms are reported as `not_der`, not
 * thrown) so that the report can name what to fix; indefinite lengths are malformed.
 */
export function readSpki(input: Uint8Array): SpkiReading {
  const fixed = fixedLengthReading(input);
  if (fixed) return fixed;
  const problems: NonCanonical[] = [];
  const note = (kind: NonCanonicalKind, message: string) => problems.push({ kind, message });
  const reader = new LenientReader(note);

  const outer = reader.read(input, 0, TAG.SEQUENCE, "SubjectPublicKeyInfo");
  const [algorithm, publicKey, ...extra] = reader.children(outer.content);
  if (!algorithm || algorithm.tag !== TAG.SEQUENCE)
    throw new SpkiError("SubjectPublicKeyInfo has no AlgorithmIdentifier");
  if (!publicKey || publicKey.tag !== TAG.BIT_STRING)
    throw new SpkiError("SubjectPublicKeyInfo has no subjectPublicKey");
  if (extra.length > 0) throw new SpkiError("SubjectPublicKeyInfo has more than two elements");
  const [oidEl, params, ...moreParams] = reader.children(algorithm.content);
  if (!oidEl || oidEl.tag !== TAG.OID || moreParams.length > 0) throw new SpkiError("malformed AlgorithmIdentifier");
  const oid = decodeOid(oidEl.content);
  if (publicKey.content.length === 0) throw new SpkiError("subjectPublicKey BIT STRING is empty");
  if (publicKey.content[0] !== 0) {
    // RFC 5280 §4.1.2.7: every key we accept is a whole number of octets.
    note(
      "bit_string_unused_bits",
      `the subjectPublicKey BIT STRING declares ${publicKey.content[0]} unused bits; a public key is whole octets, send 0 unused bits (RFC 5280 §4.1.2.7)`,
    );
  }
  const keyBytes = publicKey.content.subarray(1);

  let material: PublicKeyMaterial | undefined;
  if (oid === id_ecPublicKey) material = readEc(params, keyBytes, note);
  else if (oid === rsaEncryption) material = readRsa(params, keyBytes, reader, note);
  else if (oid === id_Ed25519) material = readEd25519(params, keyBytes, note);
  else throw new SpkiError(`key algorithm ${oid} is not one with a canonical form here`);

  if (outer.end !== input.length) {
    note(
      "trailing_data",
      `${input.length - outer.end} bytes follow the SubjectPublicKeyInfo; send the SubjectPublicKeyInfo alone`,
    );
  }
  const canonicalSpki = material ? encodeSpki(material) : undefined;
  // Whatever the walk above did not name (a non-minimal OID subidentifier, say) still
  // shows as a difference from the re-encoding.
  if (problems.length === 0 && canonicalSpki && !bytesEqual(canonicalSpki, input)) {
    note("not_der", "the SubjectPublicKeyInfo is not in DER (X.690 §10); re-encode it in DER");
  }
  const first = problems[0];
  if (first) return { canonical: false, problem: first, ...(canonicalSpki ? { canonicalSpki } : {}) };
  return { canonical: true, material: material as PublicKeyMaterial };
}

/**
 * The hot path: an EC key on a known curve with an uncompressed point, or an Ed25519
 * key, has a canonical DER of fixed length whose bytes up to the key are fixed too (the
 * ones encodeSpki writes). An input of that length that starts with those bytes (and,
 * for EC, the 0x04 point form) is canonical as it is: no walk, no re-encoding.
 * Anything else takes the full reading, which names what differs.
 */
function fixedLengthReading(input: Uint8Array): SpkiReading | undefined {
  for (const f of fixedForms()) {
    if (input.length !== f.length || !startsWith(input, f.prefix)) continue;
    if (f.curve === undefined)
      return { canonical: true, material: { kind: "Ed25519", key: input.slice(f.prefix.length) } };
    if (input[f.prefix.length] !== 0x04) return undefined;
    const x = f.prefix.length + 1;
    const half = (f.length - x) / 2;
    return {
      canonical: true,
      material: { kind: "EC", curve: f.curve, x: input.slice(x, x + half), y: input.slice(x + half) },
    };
  }
  return undefined;
}

interface FixedForm {
  /** The curve OID; undefined for Ed25519. */
  curve?: string;
  prefix: Uint8Array;
  length: number;
  /** EC: the bytes before a compressed and before a hybrid point of this curve. */
  compressedPrefix?: Uint8Array;
  hybridPrefix?: Uint8Array;
}

let fixed: FixedForm[] | undefined;

/** The fixed-length canonical forms, derived once from encodeSpki itself. */
function fixedForms(): FixedForm[] {
  if (fixed) return fixed;
  const forms: FixedForm[] = Object.entries(COORDINATE_LENGTH).map(([curve, size]) => {
    const der = encodeSpki({ kind: "EC", curve, x: new Uint8Array(size), y: new Uint8Array(size) });
    const algorithm = sequence(encodeOid(id_ecPublicKey), encodeOid(curve));
    const before = (point: Uint8Array) => {
      const spelled = spki(algorithm, point);
      return spelled.slice(0, spelled.length - point.length);
    };
    return {
      curve,
      prefix: der.slice(0, der.length - 1 - 2 * size),
      length: der.length,
      compressedPrefix: before(new Uint8Array(1 + size)),
      hybridPrefix: before(new Uint8Array(1 + 2 * size)),
    };
  });
  const ed = encodeSpki({ kind: "Ed25519", key: new Uint8Array(32) });
  forms.push({ prefix: ed.slice(0, ed.length - 32), length: ed.length });
  fixed = forms;
  return forms;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** The first reason `spki` is not canonical, or undefined when it is. Throws SpkiError if malformed. */
export function nonCanonical(spki: Uint8Array): NonCanonical | undefined {
  const reading = readSpki(spki);
  return reading.canonical ? undefined : reading.problem;
}

/**
 * Other spellings of a canonical SPKI's key that data stored before canonical keys
 * were required may hold (WebCrypto and OpenSSL import them, so CSRs carrying them
 * were certified): for an EC key the compressed point (0x02 or 0x03 by the parity of
 * Y, then X) and the hybrid point (0x06 or 0x07, then X and Y; SEC 1 §2.3.3), as
 * `openssl ec -conv_form compressed|hybrid` writes them; for RSA, rsaEncryption
 * without its NULL parameters. Ed25519 has none.
 *
 * @remarks Not every non-DER spelling (padded INTEGERs, BER lengths, bytes after the
 * key) can be listed; these are the ones real tools produce. Throws SpkiError for an
 * SPKI that is not canonical.
 */
export function otherSpellings(canonical: Uint8Array): Uint8Array[] {
  const reading = readSpki(canonical);
  if (!reading.canonical) throw new SpkiError(`not a canonical SPKI: ${reading.problem.message}`);
  const key = reading.material;
  switch (key.kind) {
    case "EC": {
      const odd = ((key.y[key.y.length - 1] as number) & 1) === 1;
      const forms = fixedForms().find((f) => f.curve === key.curve);
      if (forms?.compressedPrefix && forms.hybridPrefix) {
        // The hot path: the fixed bytes before each point form were encoded once.
        const compressed = new Uint8Array(forms.compressedPrefix.length + 1 + key.x.length);
        compressed.set(forms.compressedPrefix);
        compressed[forms.compressedPrefix.length] = odd ? 0x03 : 0x02;
        compressed.set(key.x, forms.compressedPrefix.length + 1);
        const hybrid = new Uint8Array(forms.hybridPrefix.length + 1 + key.x.length + key.y.length);
        hybrid.set(forms.hybridPrefix);
        hybrid[forms.hybridPrefix.length] = odd ? 0x07 : 0x06;
        hybrid.set(key.x, forms.hybridPrefix.length + 1);
        hybrid.set(key.y, forms.hybridPrefix.length + 1 + key.x.length);
        return [compressed, hybrid];
      }
      const algorithm = sequence(encodeOid(id_ecPublicKey), encodeOid(key.curve));
      return [
        spki(algorithm, concat([Uint8Array.of(odd ? 0x03 : 0x02), key.x])),
        spki(algorithm, concat([Uint8Array.of(odd ? 0x07 : 0x06), key.x, key.y])),
      ];
    }
    case "RSA":
      return [
        spki(sequence(encodeOid(rsaEncryption)), sequence(unsignedInteger(key.modulus), unsignedInteger(key.exponent))),
      ];
    case "Ed25519":
      return [];
  }
}

type Note = (kind: NonCanonicalKind, message: string) => void;

function readEc(params: Element | undefined, point: Uint8Array, note: Note): PublicKeyMaterial | undefined {
  if (!params || params.tag !== TAG.OID) {
    // RFC 5480 §2.1.1: "specifiedCurve ... MUST NOT be used"; implicitCurve neither.
    note(
      "ec_parameters",
      "the EC key's parameters are not a namedCurve OID; name the curve (RFC 5480 §2.1.1; openssl: -param_enc named_curve)",
    );
    return undefined;
  }
  const curve = decodeOid(params.content);
  // An arc beyond 2^53 loses digits in the dotted text and cannot be re-encoded: no curve has one.
  if (curve.split(".").some((arc) => !Number.isSafeInteger(Number(arc)))) {
    throw new SpkiError("the EC curve OID has an arc too large for a named curve");
  }
  const name = CURVE_NAME[curve] ?? `curve ${curve}`;
  const size = COORDINATE_LENGTH[curve];
  const form = point[0];
  if (form === 0x02 || form === 0x03) {
    note(
      "ec_point_compressed",
      `the ${name} public key uses the compressed point form; send the uncompressed form (RFC 5480 §2.2; openssl ec -conv_form uncompressed)`,
    );
    return undefined;
  }
  if (form === 0x06 || form === 0x07) {
    note(
      "ec_point_hybrid",
      `the ${name} public key uses the hybrid point form; send the uncompressed form (RFC 5480 §2.2; openssl ec -conv_form uncompressed)`,
    );
    return undefined;
  }
  if (form !== 0x04) throw new SpkiError("the EC public key is not an encoded point");
  const coordinates = point.length - 1;
  if (size === undefined ? coordinates === 0 || coordinates % 2 !== 0 : coordinates !== 2 * size) {
    note(
      "ec_point_length",
      `the ${name} public key is ${point.length} bytes; an uncompressed ${name} point is 0x04 and ${size === undefined ? "two coordinates of equal length" : `two ${size}-byte coordinates`} (SEC 1 §2.3.3)`,
    );
    return undefined;
  }
  const half = coordinates / 2;
  return { kind: "EC", curve, x: point.slice(1, 1 + half), y: point.slice(1 + half) };
}

function readRsa(
  params: Element | undefined,
  bits: Uint8Array,
  reader: LenientReader,
  note: Note,
): PublicKeyMaterial | undefined {
  if (!params || params.tag !== TAG.NULL || params.content.length !== 0) {
    note(
      "rsa_parameters",
      `the rsaEncryption AlgorithmIdentifier ${params ? "has parameters other than NULL" : "lacks its NULL parameters"}; send NULL parameters (RFC 8017 A.1, RFC 3279 §2.3.1)`,
    );
  }
  const rsaKey = reader.read(bits, 0, TAG.SEQUENCE, "RSAPublicKey");
  const [modulus, exponent, ...rest] = reader.children(rsaKey.content);
  if (!modulus || !exponent || rest.length > 0 || modulus.tag !== TAG.INTEGER || exponent.tag !== TAG.INTEGER) {
    throw new SpkiError("RSAPublicKey is not two INTEGERs");
  }
  const n = positiveMagnitude(modulus.content, "modulus", note);
  const e = positiveMagnitude(exponent.content, "publicExponent", note);
  if (rsaKey.end !== bits.length) {
    note(
      "trailing_data",
      `${bits.length - rsaKey.end} bytes follow the RSAPublicKey inside the subjectPublicKey BIT STRING; send the RSAPublicKey alone (RFC 8017 A.1.1)`,
    );
  }
  return { kind: "RSA", modulus: n, exponent: e };
}

/** The magnitude of a positive INTEGER; notes a non-minimal encoding (X.690 §8.3.2). */
function positiveMagnitude(content: Uint8Array, field: string, note: Note): Uint8Array {
  if (content.length === 0) throw new SpkiError(`RSA ${field} is an empty INTEGER`);
  if (((content[0] as number) & 0x80) !== 0) throw new SpkiError(`RSA ${field} is negative`);
  let start = 0;
  while (start < content.length - 1 && content[start] === 0) start++;
  const magnitude = content.subarray(start);
  if (magnitude.length === 1 && magnitude[0] === 0) throw new SpkiError(`RSA ${field} is zero`);
  const minimalStart = ((magnitude[0] as number) & 0x80) !== 0 ? start - 1 : start;
  if (minimalStart > 0) {
    note(
      "rsa_integer",
      `the RSA ${field} INTEGER has ${minimalStart} leading zero bytes too many; send it as a minimal DER INTEGER (RFC 8017 A.1.1, X.690 §8.3.2)`,
    );
  }
  return magnitude.slice();
}

function readEd25519(params: Element | undefined, key: Uint8Array, note: Note): PublicKeyMaterial {
  if (key.length !== 32) throw new SpkiError(`an Ed25519 public key is 32 bytes, not ${key.length} (RFC 8410 §4)`);
  if (params) {
    note("ed25519_parameters", "the id-Ed25519 AlgorithmIdentifier has parameters; they must be absent (RFC 8410 §3)");
  }
  return { kind: "Ed25519", key: key.slice() };
}

interface Element {
  tag: number;
  content: Uint8Array;
  /** Offset just past the element within what it was read from. */
  end: number;
}

/** A definite-length reader that notes, rather than refuses, non-minimal lengths. */
class LenientReader {
  constructor(private readonly note: Note) {}

  read(input: Uint8Array, offset: number, tag: number | undefined, what: string): Element {
    if (offset + 2 > input.length) throw new SpkiError(`${what} is truncated`);
    const actual = input[offset] as number;
    if (tag !== undefined && actual !== tag) throw new SpkiError(`${what} has the wrong tag`);
    if ((actual & 0x1f) === 0x1f) throw new SpkiError(`${what}: multi-byte tags are not used in an SPKI`);
    let cursor = offset + 2;
    let length = input[offset + 1] as number;
    if (length >= 0x80) {
      const count = length & 0x7f;
      if (count === 0) throw new SpkiError(`${what} has an indefinite length`);
      if (count > 4 || cursor + count > input.length) throw new SpkiError(`${what} has a bad length`);
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + (input[cursor + i] as number);
      if (length < 0x80 || (count > 1 && input[cursor] === 0)) {
        this.note("not_der", `${what} has a non-minimal length; re-encode the key in DER (X.690 §10.1)`);
      }
      cursor += count;
    }
    const end = cursor + length;
    if (end > input.length) throw new SpkiError(`${what} is truncated`);
    return { tag: actual, content: input.subarray(cursor, end), end };
  }

  children(content: Uint8Array): Element[] {
    const out: Element[] = [];
    for (let offset = 0; offset < content.length; ) {
      const el = this.read(content, offset, undefined, "an element");
      out.push(el);
      offset = el.end;
    }
    return out;
  }
}
