import type { FleetLoopHandle } from "../../authority/resources/fleet.ts";

/** What the HTTP frontends need of the fleet loop, where one runs: the fleet audit, and ingesting device messages. */
export type FleetApi = FleetLoopHandle;
