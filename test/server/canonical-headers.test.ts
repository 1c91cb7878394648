import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { CanonicalHeadersResponse, canonicalHeaderName } from "../../server/adapters/node/canonical-headers.ts";

/** The raw response head of one request to `server` (HTTP/1.1, read off the socket). */
async function rawHead(server: Server): Promise<string> {
  const { port } = server.address() as { port: number };
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () =>
      socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (c: string) => {
      text += c;
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(text.slice(0, text.indexOf("\r\n\r\n"))));
  });
}

describe("header names on the wire", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  const serve = async (handler: Parameters<typeof createServer>[1]) => {
    server = createServer({ ServerResponse: CanonicalHeadersResponse }, handler);
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
    return server;
  };

  it("spells names conventionally, with the irregular ones as RFCs write them", () => {
    expect(canonicalHeaderName("content-type")).toBe("Content-Type");
    expect(canonicalHeaderName("CONTENT-TRANSFER-ENCODING")).toBe("Content-Transfer-Encoding");
    expect(canonicalHeaderName("www-authenticate")).toBe("WWW-Authenticate");
    expect(canonicalHeaderName("etag")).toBe("ETag");
    expect(canonicalHeaderName("retry-after")).toBe("Retry-After");
    expect(canonicalHeaderName("x-edgeid-signature")).toBe("X-Edgeid-Signature");
  });

  it("respells writeHead objects, the status-message form and setHeader, and keeps values and repeated headers", async () => {
    await serve((_req, res) => {
      res.setHeader("x-set-early", "1");
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.writeHead(503, "Busy", {
        "content-type": "text/plain; charset=utf-8",
        "content-length": "5",
        "retry-after": "1",
      });
      res.end("busy\n");
    });
    const head = await rawHead(server as Server);
    expect(head.split("\r\n")[0]).toBe("HTTP/1.1 503 Busy");
    expect(head).toContain("\r\nContent-Type: text/plain; charset=utf-8\r\n");
    expect(head).toContain("\r\nRetry-After: 1\r\n");
    expect(head).toContain("\r\nX-Set-Early: 1\r\n");
    expect(head).toContain("\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n");
    expect(head).toContain("\r\nContent-Length: 5");
    expect(head).not.toMatch(/\r\n[a-z]/);
  });

  it("respells the raw array forms", async () => {
    await serve((_req, res) => {
      res.writeHead(401, ["www-authenticate", 'Basic realm="x"', "content-length", "0"]);
      res.end();
    });
    const head = await rawHead(server as Server);
    expect(head).toContain('\r\nWWW-Authenticate: Basic realm="x"\r\n');
    expect(head).toContain("\r\nContent-Length: 0");
    expect(head).not.toMatch(/\r\n[a-z]/);
  });
});
