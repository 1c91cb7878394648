import type { Actor } from "../actor.ts";
import { type CommandListRequest, type CommandTargets, getCommand, issueCommands, listCommands } from "../commands.ts";
import type { Door } from "./door.ts";

/** Commands to devices (rotate, ca-update) and their results. */
export class Commands {
  constructor(private readonly door: Door) {}

  create(actor: Actor, command: string, targets: CommandTargets) {
    return this.door.run(actor, "command.create", null, () => issueCommands(this.door.deps, actor, command, targets));
  }

  list(actor: Actor, req: CommandListRequest) {
    return this.door.run(actor, "command.list", null, () => listCommands(this.door.deps, actor, req));
  }

  show(actor: Actor, opId: string) {
    return this.door.run(actor, "command.show", null, () => getCommand(this.door.deps, actor, opId));
  }
}
