/**
 * Who is on the other end of the connection, as the transport saw it.
 *
 * On Node the TLS layer has already checked possession of the private key (the
 * CertificateVerify message); the chain is *not* trusted yet, the authority decides.
 */
export interface ClientIdentity {
  /** Leaf first, then any intermediates the client sent (DER). */
  chain: Uint8Array[];
}

export interface PeerInfo {
  remoteAddress: string;
  client?: ClientIdentity;
}
