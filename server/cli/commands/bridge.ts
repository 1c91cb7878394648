import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { MAX_BRIDGED_MESSAGES } from "../../ports/fleet-link.ts";
import { positiveInt } from "../options.ts";

/** Registers the `bridge` command. */
export function registerBridge(program: Command): void {
  program
    .command("bridge")
    .description(
      "relay device status, events and command results from an MQTT broker to a server with no broker of its own (Workers)",
    )
    .requiredOption("--mqtt-url <url>", "the broker, mqtts://HOST:PORT")
    .requiredOption("--cert <file>", "the bridge's service certificate (PEM; `edgeid mqtt service-cert --name bridge`)")
    .requiredOption("--key <file>", "its key (PEM)")
    .requiredOption("--ca <file>", "the broker's CA certificates (PEM)")
    .option("--client-id <id>", "the MQTT client id: the certificate's identity", "service:bridge")
    .option("--server <url>", "the deployment's base URL (or EDGEID_SERVER)")
    .option("--token-file <file>", "file holding an operator token (or EDGEID_OPERATOR_TOKEN[_FILE])")
    .option("--cacert <file>", "trust anchor for the server's TLS certificate (or EDGEID_CACERT)")
    .option("--batch <n>", "most messages per POST (1-500)", positiveInt, 200)
    .option("--flush-ms <n>", "longest a message waits for its batch", positiveInt, 500)
    .action(async (opts) => {
      const server = opts.server ?? process.env.EDGEID_SERVER;
      const tokenFile = opts.tokenFile ?? process.env.EDGEID_OPERATOR_TOKEN_FILE;
      const token =
        process.env.EDGEID_OPERATOR_TOKEN ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined);
      if (!server || !token) throw new Error("the bridge needs --server and an operator token (--token-file)");
      if (opts.batch > MAX_BRIDGED_MESSAGES) throw new Error(`--batch is at most ${MAX_BRIDGED_MESSAGES}`);
      const cacert = opts.cacert ?? process.env.EDGEID_CACERT;
      // Loaded here, not at the top: the other commands need neither pino nor mqtt. pino is
      // CommonJS: its default export is the function, in Node and in the bundle alike.
      const [{ default: pino }, { startBridge }] = await Promise.all([
        import("pino"),
        import("../../adapters/node/bridge.ts"),
      ]);
      const logger = pino({ base: undefined, redact: ["token"] });
      const bridge = startBridge({
        mqttUrl: opts.mqttUrl,
        clientCert: opts.cert,
        clientKey: opts.key,
        ca: opts.ca,
        clientId: opts.clientId,
        server,
        token,
        serverCa: cacert ? readFileSync(cacert, "utf8") : undefined,
        batch: opts.batch,
        flushMs: opts.flushMs,
        log: (level, msg, fields) => logger[level](fields ?? {}, msg),
      });
      const stop = async (signal: string) => {
        logger.info({ signal, relayed: bridge.relayed() }, "bridge stopping");
        await bridge.close();
        process.exit(0);
      };
      process.once("SIGINT", () => void stop("SIGINT"));
      process.once("SIGTERM", () => void stop("SIGTERM"));
    });
}
