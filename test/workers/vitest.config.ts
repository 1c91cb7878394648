/**
 * The Workers project: tests run inside workerd (the Workers runtime) against the
 * Worker of wrangler.toml with a local D1 database, migrated with the same files as
 * the Node server. A throwaway P-256 CA is made here, in Node, and handed to the
 * Worker as its CA_CHAIN var and CA_KEY secret.
 */
import { generateKeyPairSync, randomBytes, webcrypto } from "node:crypto";
import { fileURLToPath } from "node:url";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { NodeEcdsaSigner } from "../../server/adapters/node/node-signer.ts";
import { buildCaHierarchy } from "../../server/pki/ca-hierarchy.ts";
import { encodeName } from "../../server/pki/certificate.ts";
import { id_at_commonName } from "../../server/pki/oids.ts";
import { toPem } from "../../server/pki/pem.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

// Offline, always: no usage metrics, and the request.cf object is not fetched from Cloudflare.
process.env.WRANGLER_SEND_METRICS ??= "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";

async function testCa(): Promise<{ chain: string; key: string }> {
  const rootKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const issuingKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = (k: typeof rootKey) => new Uint8Array(k.publicKey.export({ type: "spki", format: "der" }));
  const serial = () => Uint8Array.from([0x01, ...randomBytes(15)]);
  const { root: rootDer, issuing } = await buildCaHierarchy(
    {
      name: encodeName([{ type: id_at_commonName, value: "Workers Test Root" }]),
      spki: spki(rootKey),
      serial: serial(),
    },
    {
      name: encodeName([{ type: id_at_commonName, value: "Workers Test Issuing" }]),
      spki: spki(issuingKey),
      serial: serial(),
    },
    new NodeEcdsaSigner(rootKey.privateKey),
    new Date(),
    webcrypto.subtle as SubtleCrypto,
  );
  return {
    chain: toPem("CERTIFICATE", issuing) + toPem("CERTIFICATE", rootDer),
    key: issuingKey.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
  };
}

export default defineConfig(async () => {
  const ca = await testCa();
  return {
    root,
    plugins: [
      cloudflareTest({
        wrangler: { configPath: `${root}/wrangler.toml` },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: await readD1Migrations(`${root}/migrations`),
            CA_CHAIN: ca.chain,
            CA_KEY: ca.key,
            EDGEID_CONFIG: JSON.stringify({
              trustDomain: "workers.example",
              profiles: {
                device: {},
                legacy: { keyTypes: ["RSA", "P-256"], validity: "30d" },
                appliance: { validity: "20d", expiryAlerts: ["30d"] },
                keyless: { serverKeygen: true, keyTypes: ["P-256"] },
              },
            }),
          },
        },
      }),
    ],
    test: {
      name: "workers",
      dir: root,
      include: ["test/workers/**/*.test.ts"],
      testTimeout: 30_000,
    },
  };
});
