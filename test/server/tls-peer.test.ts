import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { connect } from "node:tls";
import type { Context } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodePeer } from "../../server/adapters/node/tls-peer.ts";
import { toPem } from "../../server/pki/pem.ts";
import type { PeerInfo } from "../../server/ports/client-identity.ts";
import { type ChainCa, crypto, makeChainCa, makeIdevidCert } from "../support/fixtures.ts";

// What nodePeer hands the authority over a real TLS connection: the leaf that proved its
// key, then exactly what the client sent with it, as DER.
describe("nodePeer: the client certificate chain of a TLS connection", () => {
  let root: ChainCa;
  let intermediate: ChainCa;
  let other: ChainCa;
  let leaf: Uint8Array;
  let leafKey: string;
  let server: Server;
  let seen: PeerInfo[] = [];

  const keyPem = async (key: CryptoKey) =>
    toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));

  beforeAll(async () => {
    root = await makeChainCa("Peer Test Root");
    intermediate = await makeChainCa("Peer Test Intermediate", root);
    other = await makeChainCa("Unrelated CA");
    const device = await makeIdevidCert(intermediate, "SN-PEER-1");
    leaf = device.der;
    leafKey = await keyPem(device.keys.privateKey);
    const listener = await makeIdevidCert(root, "LISTENER");
    server = createServer(
      {
        key: await keyPem(listener.keys.privateKey),
        cert: toPem("CERTIFICATE", listener.der),
        // The listener trusts the whole chain: none of it may be added to what the client sent.
        ca: [toPem("CERTIFICATE", root.der), toPem("CERTIFICATE", intermediate.der)],
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => {
        seen.push(nodePeer({ env: { incoming: req } } as unknown as Context));
        res.end("ok");
      },
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** One request on a new connection presenting `certs` (leaf first, when any). */
  async function present(certs: Uint8Array[]): Promise<PeerInfo> {
    seen = [];
    const port = (server.address() as AddressInfo).port;
    const socket = connect({
      host: "127.0.0.1",
      port,
      rejectUnauthorized: false,
      ...(certs.length > 0 ? { key: leafKey, cert: certs.map((d) => toPem("CERTIFICATE", d)).join("") } : {}),
    });
    socket.end("GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    socket.resume();
    await new Promise<void>((resolve, reject) => {
      socket.on("close", () => resolve());
      socket.on("error", reject);
    });
    expect(seen).toHaveLength(1);
    return seen[0] as PeerInfo;
  }

  const chainOf = (p: PeerInfo) => (p.client?.chain ?? []).map((d) => Buffer.from(d).toString("hex"));
  const hex = (...ders: Uint8Array[]) => ders.map((d) => Buffer.from(d).toString("hex"));

  it("is the leaf and the certificates sent with it, in the order sent", async () => {
    expect(chainOf(await present([leaf, intermediate.der, root.der]))).toEqual(hex(leaf, intermediate.der, root.der));
    // Out of order, and with a certificate that issued none of them: passed on as sent;
    // the authority builds its own path (idevid.ts) and ignores what it cannot use.
    expect(chainOf(await present([leaf, other.der, root.der, intermediate.der]))).toEqual(
      hex(leaf, other.der, root.der, intermediate.der),
    );
  });

  it("adds nothing from the listener's trust store", async () => {
    expect(chainOf(await present([leaf]))).toEqual(hex(leaf));
  });

  it("keeps at most eight certificates of a longer chain", async () => {
    const sent = [leaf, ...Array.from({ length: 11 }, () => other.der)];
    const chain = chainOf(await present(sent));
    expect(chain).toHaveLength(8);
    expect(chain).toEqual(hex(...sent.slice(0, 8)));
  });

  it("has no client when the client sent no certificate", async () => {
    const p = await present([]);
    expect(p.client).toBeUndefined();
    expect(p.remoteAddress).toBe("127.0.0.1");
  });
});
