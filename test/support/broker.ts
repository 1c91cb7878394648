import { createServer, type Server, type TLSSocket } from "node:tls";
import { Aedes } from "aedes";

/**
 * An in-test MQTT broker (aedes) over TLS, until the server embeds one (issue 6):
 * devices authenticate with a client certificate from our CA and their client id must
 * be the certificate's CN; the test's observer logs in with a password instead.
 */
export interface TestBroker {
  port: number;
  /** Serials of the client certificates seen at connect, per client id, in order. */
  certificates: Map<string, string[]>;
  observerPassword: string;
  close(): Promise<void>;
}

export async function startBroker(opts: {
  key: string;
  passphrase?: string;
  cert: string;
  ca: string[];
  port?: number;
}): Promise<TestBroker> {
  const aedes = await Aedes.createBroker();
  const certificates = new Map<string, string[]>();
  const observerPassword = `observer-${Math.random().toString(36).slice(2)}`;
  aedes.authenticate = (client, username, password, done) => {
    const socket = client.conn as unknown as TLSSocket;
    if (username === "observer") {
      done(null, password?.toString() === observerPassword);
      return;
    }
    const peer = socket.getPeerCertificate?.();
    const ok = socket.authorized === true && peer?.subject?.CN === client.id;
    if (ok) certificates.set(client.id, [...(certificates.get(client.id) ?? []), peer.serialNumber.toLowerCase()]);
    done(null, ok);
  };
  const server: Server = createServer(
    {
      key: opts.key,
      passphrase: opts.passphrase,
      cert: opts.cert,
      ca: opts.ca,
      requestCert: true,
      rejectUnauthorized: false,
    },
    aedes.handle as unknown as (socket: TLSSocket) => void,
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    certificates,
    observerPassword,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => aedes.close(() => resolve()));
        // Existing client connections end with the broker.
        for (const c of Object.values((aedes as unknown as { clients: Record<string, { close(): void }> }).clients)) {
          c.close();
        }
      }),
  };
}
