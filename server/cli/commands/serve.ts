import { type Command, InvalidArgumentError } from "commander";
import { isInitialised } from "../../adapters/node/data-dir.ts";
import { parseListen } from "../../config/listen.ts";
import { initialise, warnDevPassphrase } from "../initialise.ts";
import { collect, DEFAULT_DATA } from "../options.ts";

/** Registers the `serve` command. */
export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "run the HTTPS server (EST) and the plain HTTP public listener (CRL, OCSP); initialises the data directory on first start",
    )
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .option("--listen <host:port>", "listener (default from the configuration: 127.0.0.1:8443)")
    .option("--trust-domain <td>", "trust domain when initialising on first start", "edgeid.local")
    .option("--hostname <name>", "hostname when initialising on first start (repeatable)", collect, [])
    .option(
      "--mqtt-listen <host:port|off>",
      "embedded MQTT broker (default from the configuration: 127.0.0.1:8883; off when an external broker is configured)",
    )
    .option("--mqtt-url <url>", "external broker (mqtts://…) set up by `edgeid mqtt mosquitto-config`")
    .option(
      "--public-listen <host:port|off>",
      "plain HTTP listener for CRLs, OCSP and CA certificates only (default from the configuration: 127.0.0.1:8080)",
    )
    .option(
      "--public-http-url <url>",
      "http:// base of the CRL and OCSP URLs in new certificates (default: the public listener's address)",
    )
    .option(
      "--loops <n|auto>",
      'HTTPS event loops: a number, or "auto" for one per core (default from the configuration: auto; more than one needs Node 22.12+ or 23.1+)',
      (v: string) => {
        if (v === "auto") return v;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 64)
          throw new InvalidArgumentError('a whole number from 1 to 64, or "auto"');
        return n;
      },
    )
    .action(async (opts) => {
      // CommonJS: its default export is the function, in Node and in the bundle (dist/bundle/) alike.
      const { default: pino } = await import("pino");
      const logger = pino({ base: undefined, redact: ["req.headers.authorization", "token", "passphrase"] });
      if (opts.mqttListen !== undefined && opts.mqttListen !== "off") parseListen(opts.mqttListen, "--mqtt-listen");
      if (opts.publicListen !== undefined && opts.publicListen !== "off") {
        parseListen(opts.publicListen, "--public-listen");
      }
      if (!isInitialised(opts.data)) {
        const r = await initialise(opts.data, opts);
        if (r.passphrase.development) warnDevPassphrase(r.passphrase.origin);
        process.stderr.write(
          `initialised ${r.paths.root}\nadmin operator token (shown once, store it now): ${r.admin.token}\n`,
        );
      }
      // Loaded here, not at the top: the other commands start without the server's modules.
      const { startServer } = await import("../../entry/node.ts");
      const running = await startServer({
        dataDir: opts.data,
        listen: opts.listen,
        mqttListen: opts.mqttListen,
        mqttUrl: opts.mqttUrl,
        publicListen: opts.publicListen,
        publicHttpUrl: opts.publicHttpUrl,
        loops: opts.loops,
        logger,
      });
      const stop = async (signal: string) => {
        logger.info({ signal }, "shutting down");
        await running.close();
        process.exit(0);
      };
      process.once("SIGINT", () => void stop("SIGINT"));
      process.once("SIGTERM", () => void stop("SIGTERM"));
    });
}
