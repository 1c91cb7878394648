import type { Profile } from "../config/schema.ts";
import type { PeerInfo } from "../ports/client-identity.ts";
import type { CertificateRecord, DeviceRecord, EnrollmentProtocol, TokenRecord } from "../ports/storage.ts";
import type { TokenCredentials } from "./caller.ts";
import type { IdevidIdentity } from "./provisioners/idevid.ts";

/** What an enrollment asks, what authorized it and what it gave: the types the enrollment verbs and provisioners share. */
export interface EnrollRequest {
  /** EST label (RFC 7030 §3.2.2); absent for the default path. */
  label?: string;
  csr: Uint8Array;
  credentials?: TokenCredentials;
  peer: PeerInfo;
  /** /serverkeygen: the server makes the key pair; the CSR only asks (its key is not certified). */
  serverKeygen?: boolean;
  /** The protocol the request came with (audit actions, inventory); EST when absent. */
  protocol?: EnrollmentProtocol;
  /**
   * SCEP CertPoll (RFC 8894 §3.3.3) of a request an operator approved: the token its
   * PKCSReq presented, recorded with the request. The poll is signed with the request's
   * key, which is what the approval was for; the token must still be usable.
   */
  approvedToken?: TokenRecord;
}

export interface Issued {
  certificate: Uint8Array;
  serial: string;
  deviceId: string;
  notAfter: Date;
  /** /serverkeygen only: the new private key, PKCS#8 DER. Never stored. */
  privateKey?: Uint8Array;
}

/** A gateway device, authenticated by its current certificate, that may enroll appliances. */
export interface BrokeringGateway {
  device: DeviceRecord;
  certificate: CertificateRecord;
  profile: Profile;
  applianceProfile: string;
  maxAppliances: number;
}

export interface Authorized {
  profile: Profile;
  deviceId: string;
  existing: DeviceRecord | undefined;
  token?: TokenRecord;
  idevid?: IdevidIdentity;
  /** True when this enrollment binds the IDevID to the device for the first time. */
  bindIdevid: boolean;
  /** A gateway enrolling an appliance behind it, with its own certificate. */
  gateway?: BrokeringGateway;
}
