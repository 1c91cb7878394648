// The parts of `cloudflare:test` (@cloudflare/vitest-pool-workers) these tests use,
// declared here so that the Node type check does not take in the Workers type library.
declare module "cloudflare:test" {
  export const env: {
    DB: import("../../server/adapters/storage/d1-storage.ts").D1Like;
    TEST_MIGRATIONS: unknown[];
    EDGEID_CONFIG: string;
    CA_CHAIN: string;
    /** The issuing CA's key (a secret binding); without JWT_KEY_SECRET it also seals the JWT keys. */
    CA_KEY: string;
  };
  export const SELF: {
    fetch(input: string, init?: RequestInit & { cf?: Record<string, unknown> }): Promise<Response>;
  };
  export function applyD1Migrations(db: unknown, migrations: unknown[]): Promise<void>;
}
