import type { MqttIdentity } from "./device-reports.ts";
import { isValidInventoryId } from "./identity.ts";

/** The MQTT contract's topics (docs/mqtt-contract.md). */
export const DEVICE_TOPICS = "edgeid/v1/devices";
export const FLEET_EVENTS = "edgeid/v1/fleet/events";

export type DeviceTopic =
  | { deviceId: string; kind: "status" | "events" }
  | { deviceId: string; kind: "cmd" | "cmd-result"; name: string };

export const statusTopic = (deviceId: string) => `${DEVICE_TOPICS}/${deviceId}/status`;
export const commandTopic = (deviceId: string, name: string) => `${DEVICE_TOPICS}/${deviceId}/cmd/${name}`;

const NAME = /^[\w.-]{1,64}$/;

/** Parses `edgeid/v1/devices/<id>/<kind>[/<name>]`; undefined for anything else. */
export function parseDeviceTopic(topic: string): DeviceTopic | undefined {
  if (!topic.startsWith(`${DEVICE_TOPICS}/`)) return undefined;
  const parts = topic.slice(DEVICE_TOPICS.length + 1).split("/");
  const [deviceId, kind, name, ...rest] = parts;
  if (!deviceId || !isValidInventoryId(deviceId) || rest.length > 0) return undefined;
  if ((kind === "status" || kind === "events") && name === undefined) return { deviceId, kind };
  if ((kind === "cmd" || kind === "cmd-result") && name !== undefined && NAME.test(name)) {
    return { deviceId, kind, name };
  }
  return undefined;
}

/** The server's own service identity (its client of an external broker): the only one that sends commands. */
export const SERVER_SERVICE_NAME = "edgeid";

/**
 * Topic authorization. A device publishes its status, events and command results under
 * its own prefix, and nothing else (never a command, never another device's topic).
 * Service identities read everything; only the server's own may publish, and only
 * commands — other services cannot bypass the audited command outbox.
 */
export function mayPublish(who: MqttIdentity, topic: string): boolean {
  const t = parseDeviceTopic(topic);
  if (who.kind === "service") return who.name === SERVER_SERVICE_NAME && t?.kind === "cmd";
  return t !== undefined && t.deviceId === who.deviceId && t.kind !== "cmd";
}

/** A device subscribes to its own commands only: `.../<id>/cmd/+` or `.../<id>/cmd/<name>`. */
export function maySubscribe(who: MqttIdentity, filter: string): boolean {
  if (who.kind === "service") return filter.startsWith("edgeid/v1/") || filter === "edgeid/v1/#";
  const prefix = `${DEVICE_TOPICS}/${who.deviceId}/cmd/`;
  if (!filter.startsWith(prefix)) return false;
  const rest = filter.slice(prefix.length);
  return rest === "+" || NAME.test(rest);
}
