import { z } from "zod";
import { isDuration, parseDuration } from "./duration.ts";

/**
 * One configuration schema for both runtimes. On Node it is read from
 * `<data>/edgeid.json`; on Workers from vars. Durations are strings ("72h").
 */

const duration = z.string().refine(isDuration, "a duration such as 72h, 30m or 7d").transform(parseDuration);

export const KEY_TYPES = ["P-256", "P-384", "Ed25519", "RSA"] as const;

/** EST labels name profiles (RFC 7030 §3.2.2): one path segment, not an operation name. */
const RESERVED_LABELS = new Set(["cacerts", "simpleenroll", "simplereenroll", "csrattrs", "serverkeygen", "fullcmc"]);
export const profileName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "profile names are 1-32 lowercase letters, digits or '-'")
  .refine((s) => !RESERVED_LABELS.has(s), "a profile may not be named like an EST operation");

/** `requireNewKeyOnReenroll` (a boolean) was the setting before `reenroll`; files that still say it mean the same. */
function renamedSettings(input: unknown): unknown {
  if (typeof input !== "object" || input === null || !("requireNewKeyOnReenroll" in input)) return input;
  const { requireNewKeyOnReenroll, ...rest } = input as Record<string, unknown>;
  if ("reenroll" in rest || typeof requireNewKeyOnReenroll !== "boolean") return input;
  return { ...rest, reenroll: requireNewKeyOnReenroll ? "rekey" : "renew-or-rekey" };
}

/** Certificates that live at most this long (seconds) may renew after expiry by default. */
const SHORT_LIVED = 7 * 86400;

const profileObject = z
  .object({
    description: z.string().default(""),
    /**
     * The issuing CA: "issuing-p256" (default), or "issuing-rsa", the RSA hierarchy for
     * appliances whose TLS stacks cannot validate an ECDSA chain.
     */
    issuer: z.enum(["issuing-p256", "issuing-rsa"]).default("issuing-p256"),
    /** Accepted key types, the preferred one first (it is what csrattrs advertises first). */
    keyTypes: z.array(z.enum(KEY_TYPES)).min(1).default(["P-256", "P-384", "Ed25519"]),
    rsaMinBits: z.number().int().min(2048).default(2048),
    rsaMaxBits: z.number().int().max(8192).default(4096),
    validity: duration.default(72 * 3600),
    /** notBefore is set this far in the past to absorb device clock skew. */
    backdate: duration.default(300),
    /**
     * The longest TTL a workload registration entry may give the X.509-SVIDs of this
     * profile's devices (default: the server's maximum, 24 h). SVIDs never outlive the
     * device certificate they were asked with.
     */
    workloadMaxTtl: duration.optional(),
    extendedKeyUsage: z
      .array(z.enum(["clientAuth", "serverAuth"]))
      .min(1)
      .default(["clientAuth"]),
    /**
     * What simplereenroll accepts; RFC 7030 §4.2.2 allows both renewal (same key) and
     * rekey (new key).
     * - "rekey": a new key at every re-enrollment (a key that leaked keeps no identity
     *   past the certificate it was in). The default, and what devices and gateways use.
     * - "renew-or-rekey": the current key may be certified again, for appliances that
     *   cannot make keys (theirs came from serverkeygen or a PKCS#12 file).
     * Either way a key certified for another device is refused (one key, one identity).
     */
    reenroll: z.enum(["rekey", "renew-or-rekey"]).default("rekey"),
    /**
     * How long after its certificate expired a device may still renew with it (mutual
     * TLS with the expired certificate: proof of possession of its key), if it was never
     * revoked, is the device's current one and the device is active. For devices that
     * were offline past their short lifetime. Unset: 30 days for profiles whose
     * certificates live at most 7 days, 0 (never) for longer-lived ones.
     */
    renewAfterExpiry: duration.refine((s) => s <= 365 * 86400, "at most 365d").optional(),
    /**
     * "manual": simpleenroll answers 202 + Retry-After until an operator approves the
     * request; the device's next retry gets the certificate (RFC 7030 §4.2.3).
     */
    approval: z.enum(["auto", "manual"]).default("auto"),
    /** Retry-After while an enrollment waits for approval. */
    retryAfter: duration.default(60),
    /**
     * Points before a certificate's expiry at which an alert is sent (fleet events topic,
     * and the webhook if one is configured), e.g. ["30d", "7d", "1d"]: for long-lived
     * certificates that nothing renews on its own. Empty: no alerts.
     */
    expiryAlerts: z
      .array(duration.refine((s) => s > 0 && s % 86400 === 0, "whole days, such as 30d"))
      .max(8)
      .default([]),
    /**
     * /serverkeygen (RFC 7030 §4.4): the server makes the key (the profile's first key
     * type) and returns it with the certificate, for devices that cannot generate one.
     * The server never stores the key.
     */
    serverKeygen: z.boolean().default(false),
    /**
     * A gateway profile: its devices may enroll the appliances behind them, over EST with
     * their own client certificate, as spiffe://<td>/gateway/<gateway id>/appliance/<name>.
     */
    gateway: z
      .object({
        /** The profile (EST label) the appliances are enrolled in. */
        applianceProfile: profileName,
        /** Appliances one gateway may hold at once (active or suspended; revoked ones do not count). */
        maxAppliances: z.number().int().min(1).max(100_000).default(100),
      })
      .optional(),
    /**
     * Offered over SCEP (RFC 8894) at /scep/<label> (and /scep for the device profile),
     * with the bootstrap token as the challenge password. SCEP needs the RSA hierarchy
     * (its RA key is RSA). `legacyCiphers` also accepts 3DES and SHA-1, for old
     * firmware that knows nothing else; AES and SHA-256 otherwise.
     */
    scep: z.object({ legacyCiphers: z.boolean().default(false) }).optional(),
    /** Zero-touch first boot with a manufacturer certificate (IDevID). */
    idevid: z
      .object({
        /** PEM bundle of manufacturer CA certificates (a path on Node, relative to the data directory). */
        trustBundle: z.string().min(1),
        /** Where the device id is read from in the IDevID. */
        deviceIdFrom: z.enum(["subject.serialNumber", "subject.commonName"]).default("subject.serialNumber"),
        /**
         * How an IDevID comes to be bound to a device id.
         * - "first-use": an IDevID may claim a device id that does not exist yet, and is
         *   bound to it at that enrollment.
         * - "pre-bound": only an IDevID an operator bound first (`edgeid devices
         *   bind-idevid`, POST /api/v1/devices/{id}/idevid) may enroll.
         * In both modes a device id that already exists without a binding can never be
         * claimed by an IDevID unless an operator bound one first.
         */
        binding: z.enum(["first-use", "pre-bound"]).default("first-use"),
      })
      .optional(),
  })
  .refine((p) => p.rsaMinBits <= p.rsaMaxBits, "rsaMinBits must not exceed rsaMaxBits")
  .transform((p) => ({
    ...p,
    renewAfterExpiry: p.renewAfterExpiry ?? (p.validity <= SHORT_LIVED ? 30 * 86400 : 0),
  }));
export const profileSchema = z.preprocess(renamedSettings, profileObject);

export type Profile = z.infer<typeof profileSchema> & { name: string };

export const configSchema = z.object({
  /** SPIFFE trust domain: identities are spiffe://<trustDomain>/device/<id>. */
  trustDomain: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/, "a trust domain is a lowercase DNS-like name (SPIFFE §2.1)"),
  hostnames: z.array(z.string().min(1)).default(["localhost"]),
  listen: z.string().default("127.0.0.1:8443"),
  /**
   * HTTPS event loops on Node (`edgeid serve --loops`): "auto" (the default: one per
   * core) or a number. Extra loops are worker threads sharing the listeners' ports
   * (`reusePort`, Node 22.12+ / 23.1+; one loop on older lines, said in the log at
   * start). Refusal budgets are per loop.
   */
  loops: z.union([z.number().int().min(1).max(64), z.literal("auto")]).default("auto"),
  /**
   * The HTTPS base URL of this server (EST, operator API). CRL and OCSP URLs in
   * certificates use it only when there is no plain HTTP base (`publicHttpUrl`, or the
   * public listener); defaults from the listener.
   */
  publicUrl: z.url().optional(),
  /**
   * The public listener: plain HTTP serving only what is public and signed or
   * non-secret (CRLs, OCSP, CA certificates; `/pki/…`), never anything authenticated.
   * HOST:PORT, or "off".
   */
  publicListen: z
    .string()
    .refine((s) => s === "off" || /^(?:\[[^\]]+\]|[^:]+):\d{1,5}$/.test(s), 'HOST:PORT or "off"')
    .default("127.0.0.1:8080"),
  /**
   * Base URL (http://) of the CRL and OCSP URLs written into new certificates: how
   * relying parties reach the public listener (RFC 5280 §4.2.1.13: revocation data is
   * signed and is fetched over plain HTTP, avoiding a TLS-validation loop). Defaults
   * from `publicListen`; when that is "off", certificates carry `publicUrl`'s https URLs.
   */
  publicHttpUrl: z
    .url()
    .refine((u) => u.startsWith("http://"), "an http:// URL (revocation data needs no TLS)")
    .refine((u) => !/[?#]/.test(u), "a base URL, without query or fragment")
    .transform((u) => u.replace(/\/+$/, ""))
    .optional(),
  limits: z
    .object({
      maxBodyBytes: z
        .number()
        .int()
        .min(1024)
        .max(1024 * 1024)
        .default(64 * 1024),
      maxRequestedNames: z.number().int().min(1).max(64).default(8),
      /** Enrollment requests of one device waiting for an operator (manual approval); one more is refused. */
      pendingPerDevice: z.number().int().min(1).max(100).default(3),
      /**
       * The Node HTTPS listener's own limits (the Workers runtime sets its own: see the
       * README). A connection beyond maxConnections is closed at once; a request whose
       * header block exceeds maxHeaderBytes gets 431; a TLS handshake, a header block or
       * a whole request that takes longer than its timeout is cut off (slow clients).
       */
      http: z
        .object({
          maxConnections: z.number().int().min(16).max(1_000_000).default(2048),
          maxHeaderBytes: z
            .number()
            .int()
            .min(4096)
            .max(64 * 1024)
            .default(16 * 1024),
          /** Header lines read per request; Node ignores the ones past it. */
          maxHeaders: z.number().int().min(16).max(2000).default(100),
          handshakeTimeout: duration.default(10),
          headersTimeout: duration.default(10),
          requestTimeout: duration.default(30),
          keepAliveTimeout: duration.default(30),
        })
        .refine((h) => h.headersTimeout <= h.requestTimeout, "headersTimeout must not exceed requestTimeout")
        .prefault({}),
      /**
       * Refused requests (bad tokens, malformed input, failed sign-ins, refused MQTT
       * connects) per client address and window, and per claimed device id for
       * enrollment. Within the budget each refusal is audited; past it the client gets
       * 429 with Retry-After (MQTT: the connection is dropped) and its refusals become one
       * aggregated audit record per reason and window. Requests that succeed spend nothing.
       */
      refusals: z
        .object({
          perAddress: z.number().int().min(1).max(1_000_000).default(60),
          perDevice: z.number().int().min(1).max(1_000_000).default(10),
          window: duration.default(60),
          /** Clients tracked at once (memory bound); the oldest window is closed early beyond it. */
          maxKeys: z.number().int().min(100).max(1_000_000).default(10_000),
          /**
           * How long a 429 is held before it is sent: a client that ignores Retry-After and
           * asks again at once waits this long per request on each connection (0: answer at once).
           */
          tarpit: duration.refine((s) => s <= 30, "at most 30s").default(1),
          /** Addresses never limited, e.g. a NAT gateway in front of a whole site (IPv6: any address of the /64). */
          exempt: z.array(z.string().min(1)).default([]),
        })
        .prefault({}),
    })
    .prefault({}),
  tokens: z
    .object({
      defaultTtl: duration.default(24 * 3600),
      maxTtl: duration.default(90 * 86400),
    })
    .prefault({}),
  /** Revocation status: CRL and OCSP (RFC 5280 §5, RFC 6960). */
  revocation: z
    .object({
      /** nextUpdate − thisUpdate of each CRL; a new CRL is published at half of it, and on every revocation. */
      crlValidity: duration.default(24 * 3600),
      /** nextUpdate − thisUpdate of OCSP responses; cached responses are re-signed at half of it. */
      ocspValidity: duration.default(3600),
      /** Milliseconds between checks for revocations made by other processes (the CLI). */
      pollMs: z.number().int().min(50).max(60_000).default(500),
    })
    .prefault({}),
  /** The fleet loop's MQTT broker: embedded (aedes) by default, or an external one. */
  mqtt: z
    .object({
      /** HOST:PORT of the embedded broker, or "off". */
      listen: z.string().default("127.0.0.1:8883"),
      /** Largest message accepted from a device. */
      maxMessageBytes: z
        .number()
        .int()
        .min(512)
        .max(256 * 1024)
        .default(16 * 1024),
      /** Largest MQTT packet after CONNECT, header and topic included (default: maxMessageBytes + 4 KiB). */
      maxPacketBytes: z
        .number()
        .int()
        .min(1024)
        .max(512 * 1024)
        .optional(),
      /** Largest CONNECT packet (client id and last will included). */
      maxConnectBytes: z
        .number()
        .int()
        .min(256)
        .max(64 * 1024)
        .default(4096),
      /** A connection is closed that has not finished its TLS handshake, or then sent CONNECT, within this time. */
      connectTimeout: duration.default(10),
      /** Connections to the embedded broker at once, in total. */
      maxConnections: z.number().int().min(1).default(10_000),
      /** Connections at once with one client certificate (by serial). */
      maxConnectionsPerCertificate: z.number().int().min(1).default(4),
      /** Inbound QoS 2 messages of one client awaiting PUBREL. */
      maxInflightMessages: z.number().int().min(1).max(65_535).default(16),
      /** Outgoing QoS 1/2 messages queued for one client (persistent sessions) until it acknowledges them. */
      maxQueuedMessages: z.number().int().min(1).default(100),
      /** Messages (status, events, command results) accepted from one device per minute; more are dropped. */
      deviceMessagesPerMinute: z.number().int().min(1).default(60),
      /**
       * An external broker (Mosquitto), written by `edgeid mqtt mosquitto-config`: the
       * server connects with its own service certificate, keeps the broker's CRL file
       * current and signals the broker to reload it.
       */
      external: z
        .object({
          url: z.string().regex(/^mqtts:\/\//, "an mqtts:// URL"),
          /** PEM files, relative to the data directory or absolute. */
          clientCert: z.string().min(1),
          clientKey: z.string().min(1),
          ca: z.string().min(1),
          /** Rewritten (PEM) on every CRL the server publishes. */
          crlFile: z.string().min(1).optional(),
          /** The broker's pid file: SIGHUP after each CRL rewrite makes Mosquitto reload it. */
          pidFile: z.string().min(1).optional(),
          /**
           * The broker's own listener certificate and key (PEM), and the names it covers:
           * the server renews it, like its own client certificate, before it expires.
           */
          brokerCert: z.string().min(1).optional(),
          brokerKey: z.string().min(1).optional(),
          brokerHostnames: z.array(z.string().min(1)).optional(),
        })
        .optional(),
    })
    .prefault({})
    .transform((m) => ({ ...m, maxPacketBytes: m.maxPacketBytes ?? m.maxMessageBytes + 4096 })),
  /** Where expiry alerts go besides the MQTT fleet events topic. */
  alerts: z
    .object({
      /** How often the server looks for certificates that crossed an alert point. */
      scanInterval: duration.default(3600),
      webhook: z
        .object({
          url: z.url(),
          /** A file holding the HMAC-SHA256 key for the X-Edgeid-Signature header (relative to the data directory). */
          secretFile: z.string().min(1).optional(),
          timeoutMs: z.number().int().min(100).max(60_000).default(5000),
        })
        .optional(),
    })
    .prefault({}),
  /** Fleet audits (`edgeid audit fleet`, scheduled in the server). */
  fleet: z
    .object({
      /** How often the server runs the fleet audit and publishes its findings; "0s" turns it off. */
      auditInterval: z
        .string()
        .refine((s) => s === "0s" || isDuration(s), "a duration or 0s")
        .transform((s) => (s === "0s" ? 0 : parseDuration(s)))
        .default(3600),
      notSeenFor: duration.default(24 * 3600),
      cloneWindow: duration.default(3600),
      cloneTakeovers: z.number().int().min(1).default(2),
    })
    .prefault({}),
  /** The trust domain's SPIFFE bundle (`GET /spiffe/bundle`) and its JWT-SVID signing keys. */
  spiffe: z
    .object({
      /** How long one JWT signing key signs before the next one takes over. */
      jwtKeyLifetime: duration
        .default(7 * 86400)
        .refine((s) => s >= 3600, "at least 1h (a key outlives its tokens by the 1h JWT-SVID maximum)"),
      /** spiffe_refresh_hint: how often relying parties should fetch the bundle again, in seconds. */
      refreshHint: duration.default(300).refine((s) => s >= 30 && s <= 86400, "between 30s and 1d"),
      /**
       * How long an expired X.509-SVID's row (and its key's claim) is kept after its
       * notAfter before the server prunes it (hourly on Node, on the Cron Trigger on
       * Workers). Revoked SVIDs stay on CRLs and in OCSP until they expire whatever this is.
       */
      svidRetention: duration.default(7 * 86400),
    })
    .prefault({}),
  /** Other trust domains whose SPIFFE bundles this server fetches and hands to workloads. */
  federation: z
    .array(
      z
        .object({
          trustDomain: z
            .string()
            .regex(/^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/, "a trust domain is a lowercase DNS-like name"),
          /** The foreign SPIFFE bundle endpoint (https). */
          bundleEndpointUrl: z.url().refine((u) => u.startsWith("https://"), "an https:// URL"),
          /**
           * https_web: the endpoint's certificate is checked like any HTTPS server's (the
           * system CAs, or `caFile`); https_spiffe: it must be an X.509-SVID of
           * `endpointSpiffeId` chaining to the foreign bundle held (first `trustBundle`).
           */
          profile: z.enum(["https_web", "https_spiffe"]),
          endpointSpiffeId: z
            .string()
            .regex(/^spiffe:\/\/[a-z0-9.-]+(\/[A-Za-z0-9._-]+)*$/, "a SPIFFE ID")
            .optional(),
          /** https_spiffe: the foreign bundle to start from (a JWKS, or PEM certificates). */
          trustBundle: z.string().min(1).optional(),
          /** https_web: PEM CA certificates to trust instead of the system's (a private CA). */
          caFile: z.string().min(1).optional(),
        })
        .superRefine((f, ctx) => {
          if (f.profile === "https_spiffe" && (!f.endpointSpiffeId || !f.trustBundle)) {
            ctx.addIssue({ code: "custom", message: "https_spiffe needs endpointSpiffeId and trustBundle" });
          }
        }),
    )
    .default([])
    .refine((list) => new Set(list.map((f) => f.trustDomain)).size === list.length, "one entry per trust domain"),
  profiles: z
    .record(profileName, profileSchema)
    .default(() => ({ device: profileSchema.parse({ description: "Short-lived device identity" }) }))
    .refine((p) => "device" in p, "the device profile must exist")
    .superRefine((profiles, ctx) => {
      for (const [name, p] of Object.entries(profiles)) {
        // GetCACert gives the RA and the profile's CA chain, and SCEP clients encrypt to
        // the certificates they get (RSA key transport): an ECDSA chain breaks them.
        if (p.scep && p.issuer !== "issuing-rsa") {
          ctx.addIssue({
            code: "custom",
            path: [name, "scep"],
            message: 'SCEP is offered only for profiles issued by the RSA hierarchy ("issuer": "issuing-rsa")',
          });
        }
      }
      for (const [name, p] of Object.entries(profiles)) {
        if (!p.gateway) continue;
        const target = profiles[p.gateway.applianceProfile];
        if (!target || target.gateway || p.gateway.applianceProfile === "device") {
          ctx.addIssue({
            code: "custom",
            path: [name, "gateway", "applianceProfile"],
            message: "must name another profile that is not a gateway profile, nor the device profile",
          });
        }
      }
    }),
});

/**
 * The profiles `edgeid init` writes: short-lived device identities; the legacy path
 * (RSA hierarchy, a year, serverAuth+clientAuth, server-side keys allowed, expiry
 * alerts); gateways and the appliances they enroll.
 */
export const INIT_PROFILES = {
  device: { description: "Short-lived device identity, renewed by the agent" },
  legacy: {
    description: "Legacy appliances: RSA chain, long-lived certificates watched for expiry",
    issuer: "issuing-rsa",
    keyTypes: ["RSA", "P-256"],
    rsaMinBits: 2048,
    rsaMaxBits: 4096,
    validity: "365d",
    extendedKeyUsage: ["serverAuth", "clientAuth"],
    serverKeygen: true,
    reenroll: "renew-or-rekey",
    expiryAlerts: ["30d", "7d", "1d"],
    scep: {},
  },
  gateway: {
    description: "Gateways that enroll the appliances behind them",
    gateway: { applianceProfile: "appliance", maxAppliances: 100 },
  },
  appliance: {
    description: "Appliances enrolled by their gateway",
    issuer: "issuing-rsa",
    keyTypes: ["RSA", "P-256"],
    validity: "90d",
    extendedKeyUsage: ["serverAuth", "clientAuth"],
    reenroll: "renew-or-rekey",
    expiryAlerts: ["14d", "3d"],
  },
} satisfies NonNullable<ConfigInput["profiles"]>;

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Validates a configuration; the error lists every problem with its path. */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(result.error)}`);
  return result.data;
}

export function profilesOf(config: Config): Map<string, Profile> {
  return new Map(Object.entries(config.profiles).map(([name, p]) => [name, { ...p, name }]));
}
