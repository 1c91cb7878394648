/**
 * Structure-aware mutation of DER: the input is decoded into a tree (constructed
 * elements, and OCTET/BIT STRINGs that hold DER, become nodes with children), one to
 * three structural mutations are applied to random nodes (tag, length encoding,
 * INTEGER and OID values, duplication, removal, reordering, nesting, truncation), the
 * tree is re-encoded, and sometimes byte-level flips follow.
 */
import { concat, encodeLength, readTlv } from "../server/pki/der.ts";
import type { Rng } from "./rng.ts";

type LengthForm = "exact" | "long" | "short" | "huge" | "indefinite" | "non-minimal" | "five-bytes";

export interface DerNode {
  /** The identifier octet(s). */
  tag: Uint8Array;
  /** For a BIT STRING holding DER: the unused-bits octet before the nested elements. */
  prefix?: Uint8Array;
  children?: DerNode[];
  content?: Uint8Array;
  length?: LengthForm;
}

const MAX_DEPTH = 64;

/** The tree of `input`; bytes that do not parse as DER become one leaf with tag 0x04. */
export function decodeTree(input: Uint8Array): DerNode[] {
  const out = children(input, 0);
  return out ?? [{ tag: Uint8Array.of(0x04), content: input }];
}

function children(bytes: Uint8Array, depth: number): DerNode[] | undefined {
  const out: DerNode[] = [];
  let offset = 0;
  try {
    while (offset < bytes.length) {
      const el = readTlv(bytes, offset);
      out.push(node(el.tag, el.content, depth));
      offset = el.end;
    }
  } catch {
    return undefined;
  }
  return out;
}

function node(tag: number, content: Uint8Array, depth: number): DerNode {
  const t = Uint8Array.of(tag);
  if (depth < MAX_DEPTH) {
    if (tag & 0x20) {
      const kids = children(content, depth + 1);
      if (kids) return { tag: t, children: kids };
    } else if (tag === 0x04 && content.length >= 2 && (content[0] === 0x30 || content[0] === 0x04)) {
      const kids = children(content, depth + 1);
      if (kids) return { tag: t, children: kids };
    } else if (tag === 0x03 && content.length >= 3 && content[0] === 0 && content[1] === 0x30) {
      const kids = children(content.subarray(1), depth + 1);
      if (kids) return { tag: t, prefix: content.subarray(0, 1), children: kids };
    }
  }
  return { tag: t, content };
}

export function encodeTree(nodes: readonly DerNode[]): Uint8Array {
  return concat(nodes.map(encodeNode));
}

function encodeNode(n: DerNode): Uint8Array {
  const body = n.children
    ? concat([n.prefix ?? new Uint8Array(0), ...n.children.map(encodeNode)])
    : (n.content ?? new Uint8Array(0));
  switch (n.length ?? "exact") {
    case "exact":
      return concat([n.tag, encodeLength(body.length), body]);
    case "long":
      return concat([n.tag, encodeLength(body.length + 1 + (body.length % 7)), body]);
    case "short":
      return concat([n.tag, encodeLength(Math.max(0, body.length - 1 - (body.length % 5))), body]);
    case "huge":
      return concat([n.tag, Uint8Array.of(0x84, 0xff, 0xff, 0xff, 0xf0), body]);
    case "five-bytes":
      return concat([n.tag, Uint8Array.of(0x85, 0, 0, 0, 0, body.length & 0xff), body]);
    case "indefinite":
      return concat([n.tag, Uint8Array.of(0x80), body, Uint8Array.of(0, 0)]);
    case "non-minimal": {
      const len = body.length;
      return concat([n.tag, Uint8Array.of(0x82, (len >> 8) & 0xff, len & 0xff), body]);
    }
  }
}

/** Every node with its parent's child list (undefined for the top level). */
function flatten(nodes: DerNode[], out: { node: DerNode; siblings: DerNode[] }[] = []) {
  for (const n of nodes) {
    out.push({ node: n, siblings: nodes });
    if (n.children) flatten(n.children, out);
  }
  return out;
}

const INTERESTING_INTEGERS: Uint8Array[] = [
  new Uint8Array(0),
  Uint8Array.of(0),
  Uint8Array.of(0x80),
  Uint8Array.of(0xff),
  Uint8Array.of(0x00, 0x01),
  Uint8Array.of(0xff, 0x80),
  Uint8Array.of(0x7f, 0xff, 0xff, 0xff),
  Uint8Array.of(0x80, 0, 0, 0, 0, 0, 0, 0, 0),
  Uint8Array.of(0x01, 0, 1),
];

const INTERESTING_OIDS: Uint8Array[] = [
  new Uint8Array(0),
  Uint8Array.of(0x80),
  Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
  Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02),
  Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07),
  Uint8Array.of(0x2b, 0x65, 0x70),
  Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01),
  Uint8Array.of(0x2b, 0x0e, 0x03, 0x02, 0x1a),
  Uint8Array.of(0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01),
  Uint8Array.of(0x55, 0x1d, 0x11),
  Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e),
  Uint8Array.of(0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02),
  Uint8Array.of(0x7f),
  Uint8Array.of(0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01),
];

const TAGS = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0a, 0x0c, 0x12, 0x13, 0x14, 0x16, 0x17, 0x18, 0x1a, 0x1e, 0x1f, 0x30,
  0x31, 0x80, 0x81, 0x82, 0x86, 0x87, 0x88, 0xa0, 0xa1, 0xa2, 0xa3, 0xff,
];

function mutateNode(rng: Rng, entry: { node: DerNode; siblings: DerNode[] }, all: DerNode[]): void {
  const { node: n, siblings } = entry;
  switch (rng.int(14)) {
    case 0: // tag
      n.tag = rng.chance(0.1) ? Uint8Array.of(rng.pick(TAGS) | 0x1f, 0x81, 0x00) : Uint8Array.of(rng.pick(TAGS));
      break;
    case 1: // flip the constructed bit
      n.tag = Uint8Array.of((n.tag[0] as number) ^ 0x20);
      break;
    case 2:
    case 3: // length form
      n.length = rng.pick<LengthForm>(["long", "short", "huge", "indefinite", "non-minimal", "five-bytes"]);
      break;
    case 4: // an INTEGER value
      n.children = undefined;
      n.tag = Uint8Array.of(0x02);
      n.content = rng.chance(0.8) ? rng.pick(INTERESTING_INTEGERS) : rng.bytes(rng.size(600));
      break;
    case 5: // an OID value
      n.children = undefined;
      n.tag = Uint8Array.of(0x06);
      n.content = rng.chance(0.7) ? rng.pick(INTERESTING_OIDS) : rng.bytes(rng.size(40));
      break;
    case 6: {
      // duplicate the element (several times, sometimes many)
      const times = rng.chance(0.1) ? rng.range(10, 400) : rng.range(1, 3);
      const at = siblings.indexOf(n);
      for (let i = 0; i < times; i++) siblings.splice(at, 0, clone(n));
      break;
    }
    case 7: // remove it
      siblings.splice(siblings.indexOf(n), 1);
      break;
    case 8: {
      // swap with a sibling
      const a = siblings.indexOf(n);
      const b = rng.int(siblings.length);
      siblings[a] = siblings[b] as DerNode;
      siblings[b] = n;
      break;
    }
    case 9: {
      // nest it deeper
      const depth = rng.chance(0.2) ? rng.range(50, 600) : rng.range(1, 8);
      let inner: DerNode = clone(n);
      for (let i = 0; i < depth; i++) inner = { tag: Uint8Array.of(rng.chance(0.5) ? 0x30 : 0xa0), children: [inner] };
      siblings[siblings.indexOf(n)] = inner;
      break;
    }
    case 10: // content replaced by random bytes
      n.children = undefined;
      n.content = rng.bytes(rng.size(300));
      break;
    case 11: // an element from elsewhere in the input
      siblings.splice(rng.int(siblings.length + 1), 0, clone(rng.pick(all)));
      break;
    case 12: // empty it
      n.prefix = undefined;
      if (n.children) n.children = [];
      else n.content = new Uint8Array(0);
      break;
    default: // truncate its content
      if (n.content) n.content = n.content.subarray(0, rng.int(n.content.length + 1));
      else if (n.children) n.children = n.children.slice(0, rng.int(n.children.length + 1));
      break;
  }
}

function clone(n: DerNode): DerNode {
  return { ...n, children: n.children?.map(clone) };
}

/** Byte-level damage: flips, insertions, deletions, truncation. */
export function mutateBytes(rng: Rng, input: Uint8Array): Uint8Array {
  let out: Uint8Array = Uint8Array.from(input);
  const rounds = rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    if (out.length === 0) return rng.bytes(rng.size(64));
    const at = rng.int(out.length);
    switch (rng.int(6)) {
      case 0:
        out[at] = (out[at] as number) ^ (1 << rng.int(8));
        break;
      case 1:
        out[at] = rng.u32() & 0xff;
        break;
      case 2:
        out = concat([out.subarray(0, at), rng.bytes(rng.range(1, 8)), out.subarray(at)]);
        break;
      case 3:
        out = concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + rng.range(1, 8)))]);
        break;
      case 4:
        out = out.slice(0, at);
        break;
      default:
        out[at] = rng.pick([0x00, 0x80, 0x7f, 0xff, 0x30, 0x84]);
        break;
    }
  }
  return out;
}

/** One mutant of a DER input. */
export function mutateDer(rng: Rng, input: Uint8Array): Uint8Array {
  if (rng.chance(0.15)) return mutateBytes(rng, input);
  const tree = decodeTree(input);
  const rounds = rng.range(1, 3);
  for (let r = 0; r < rounds; r++) {
    const all = flatten(tree);
    if (all.length === 0) break;
    mutateNode(
      rng,
      rng.pick(all),
      all.map((e) => e.node),
    );
  }
  let out = encodeTree(tree);
  if (rng.chance(0.1)) out = out.subarray(0, rng.int(out.length + 1));
  if (rng.chance(0.05)) out = concat([out, rng.bytes(rng.range(1, 16))]);
  if (rng.chance(0.15)) out = mutateBytes(rng, out);
  return out;
}
