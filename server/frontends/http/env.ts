import type { PeerInfo } from "../../ports/client-identity.ts";

/** Values a frontend hands to the request log through the hono context. */
export interface AppEnv {
  Variables: {
    /** The connection's peer, read once per request. */
    peer: PeerInfo;
    /** The audit reason of a refused request, e.g. "token_used". */
    refusal: string;
  };
}
