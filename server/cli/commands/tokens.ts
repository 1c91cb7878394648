import { type Command, Option } from "commander";
import { MAX_TOKENS_PER_REQUEST, seriesWidth } from "../../authority/tokens.ts";
import type { TokenBatch } from "../fleet-client.ts";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { collect, declaredNamesOf, durationText, positiveInt } from "../options.ts";
import { printList, printNextCursor, printObject, TOKEN_COLUMNS } from "../output.ts";

/** Registers `edgeid token`: bootstrap tokens. */
export function registerTokens(program: Command): void {
  const token = program.command("token").description("one-time bootstrap tokens");
  fleetCommand(token, "create")
    .description("create a bootstrap token for a device, or --count tokens for a production batch")
    .option("--device <id>", "device id")
    .option("--count <n>", "number of devices in a batch", positiveInt)
    .option("--device-prefix <prefix>", "batch device ids: <prefix><sequence number>")
    .option("--start <n>", "first sequence number of a batch", positiveInt, 1)
    .option("--profile <name>", "profile the device enrolls under", "device")
    .option("--ttl <duration>", "token lifetime, e.g. 24h, 7d", durationText)
    .option("--dns <name>", "a DNS name the device's certificates carry (repeatable; one device only)", collect, [])
    .option(
      "--ip <address>",
      "an IP address the device's certificates carry (repeatable; one device only)",
      collect,
      [],
    )
    .option("--json", "one JSON object per token and line")
    .action((opts) =>
      withFleet(opts, async (fleet) => {
        let batches: TokenBatch[];
        if (opts.device && !opts.count) batches = [{ deviceIds: [opts.device] }];
        else if (opts.count && opts.devicePrefix && !opts.device) {
          // A batch larger than one request allows goes as several, numbered alike; each
          // part's tokens are printed as soon as it is committed.
          const width = seriesWidth(opts.start, opts.count);
          batches = [];
          for (let done = 0; done < opts.count; done += MAX_TOKENS_PER_REQUEST) {
            const count = Math.min(MAX_TOKENS_PER_REQUEST, opts.count - done);
            batches.push({ count, devicePrefix: opts.devicePrefix, start: opts.start + done, width });
          }
        } else {
          throw new Error("give either --device ID, or --count N with --device-prefix PREFIX");
        }
        const names = declaredNamesOf(opts);
        for (const batch of batches) {
          const lines = (await fleet.createTokens(batch, { profile: opts.profile, ttl: opts.ttl, names })).map((t) =>
            opts.json ? `${JSON.stringify(t)}\n` : `${t.deviceId}\t${t.token}\texpires ${t.expiresAt}\n`,
          );
          process.stdout.write(lines.join(""));
        }
      }),
    );
  fleetCommand(token, "list")
    .description("bootstrap tokens (never their secrets)")
    .option("--device <id>")
    .addOption(new Option("--state <state>").choices(["unused", "used", "revoked", "expired"]))
    .option("--cursor <cursor>")
    .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
    .option("--json", "one JSON object per token and line")
    .action((opts) =>
      withFleet(opts, async (fleet) => {
        const page = await fleet.listTokens({
          deviceId: opts.device,
          state: opts.state,
          cursor: opts.cursor,
          limit: opts.limit,
        });
        printList(page.items, Boolean(opts.json), TOKEN_COLUMNS);
        printNextCursor(page.nextCursor);
      }),
    );
  fleetCommand(token, "revoke")
    .argument("<token-id>", "tok_…")
    .option("--json", "one JSON object")
    .action((id: string, opts) =>
      withFleet(opts, async (fleet) => printObject(await fleet.revokeToken(id), Boolean(opts.json))),
    );
}
