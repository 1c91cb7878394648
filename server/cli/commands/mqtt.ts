import type { Command } from "commander";
import { writeMosquittoConfig, writeServiceIdentity } from "../../adapters/node/mosquitto.ts";
import { parseListen } from "../../config/listen.ts";
import { collect, DEFAULT_DATA } from "../options.ts";

/** Registers `edgeid mqtt`: the broker's configuration and service identities. */
export function registerMqtt(program: Command): void {
  const mqtt = program.command("mqtt").description("the fleet loop's MQTT broker");
  mqtt
    .command("mosquitto-config")
    .description(
      "write a Mosquitto configuration (TLS with our CA, identity = certificate CN, per-device ACL, our CRL) and point the server at it",
    )
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .requiredOption("--out <dir>", "where the broker's files go")
    .option("--listen <host:port>", "the broker's listener", "127.0.0.1:8883")
    .option("--user <name>", "the user Mosquitto runs as (it reads the key files; default: you)")
    .option("--reader <service>", "a service identity that may read every edgeid/v1 topic (repeatable)", collect, [])
    .option("--json", "one JSON object")
    .action(async (opts) => {
      const r = await writeMosquittoConfig({
        dataDir: opts.data,
        out: opts.out,
        listen: parseListen(opts.listen),
        user: opts.user,
        readers: opts.reader,
        env: process.env,
      });
      if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        process.stdout.write(
          `wrote ${r.files.config}\nstart the broker:  mosquitto -c ${r.files.config}\n` +
            `the server now uses ${r.url} (edgeid serve; its embedded broker is off unless --mqtt-listen is given)\n`,
        );
      }
    });

  mqtt
    .command("service-cert")
    .description(
      "a client certificate for a service (spiffe://<td>/service/<name>): reads every edgeid/v1 topic and may send commands, on the embedded or an external broker",
    )
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .requiredOption("--name <name>", "service name: 1-32 lowercase letters, digits or '-'")
    .requiredOption("--out <dir>", "where <name>.pem, <name>.key and ca.pem go")
    .option("--json", "one JSON object")
    .action(async (opts) => {
      const r = await writeServiceIdentity({ dataDir: opts.data, name: opts.name, out: opts.out, env: process.env });
      if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        process.stdout.write(
          `${r.identity}: ${r.cert} (key ${r.key}, serial ${r.serial}, until ${r.notAfter})\n` +
            `MQTT client id: service:${opts.name} (or service:${opts.name}.<suffix>)\n`,
        );
      }
    });
}
