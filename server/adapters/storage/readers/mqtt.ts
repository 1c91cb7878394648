import { and, asc, desc, eq, gt, lt, type SQL, sql } from "drizzle-orm";
import type {
  CommandQuery,
  CommandRecord,
  DeviceEventRecord,
  DeviceStatusRecord,
  MqttSessionRecord,
} from "../../../ports/storage.ts";
import { commands, deviceEvents, deviceStatus, mqttSessions } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** What travels over MQTT: status reports, device events, commands and broker sessions. */
export function mqttReaders<B extends ConnectionClass>(Base: B) {
  return class MqttReaders extends Base {
    async getDeviceStatus(deviceId: string): Promise<DeviceStatusRecord | undefined> {
      return this.findOne(deviceStatus, deviceStatus.deviceId, deviceId);
    }

    async listDeviceEvents(deviceId: string, before: number | undefined, limit: number): Promise<DeviceEventRecord[]> {
      return this.db
        .select()
        .from(deviceEvents)
        .where(
          and(eq(deviceEvents.deviceId, deviceId), before === undefined ? undefined : lt(deviceEvents.seq, before)),
        )
        .orderBy(desc(deviceEvents.seq))
        .limit(limit)
        .all();
    }

    async getCommand(opId: string): Promise<CommandRecord | undefined> {
      return this.findOne(commands, commands.opId, opId);
    }

    async listCommands(q: CommandQuery): Promise<CommandRecord[]> {
      const conds: (SQL | undefined)[] = [];
      if (q.deviceId) conds.push(eq(commands.deviceId, q.deviceId));
      if (q.batchId) conds.push(eq(commands.batchId, q.batchId));
      if (q.state) conds.push(eq(commands.state, q.state));
      if (q.after) conds.push(gt(commands.opId, q.after));
      return this.page(commands, conds, [asc(commands.opId)], q.limit);
    }

    async queuedCommands(limit: number): Promise<CommandRecord[]> {
      const q = this.prepared("queuedCommands", () =>
        this.db
          .select()
          .from(commands)
          .where(eq(commands.state, "queued"))
          .orderBy(asc(commands.createdAt))
          .limit(sql.placeholder("limit")),
      );
      return (await q.all({ limit })) as CommandRecord[];
    }

    async listMqttSessions(deviceId: string, limit: number): Promise<MqttSessionRecord[]> {
      return this.db
        .select()
        .from(mqttSessions)
        .where(eq(mqttSessions.deviceId, deviceId))
        .orderBy(desc(mqttSessions.connectedAt))
        .limit(limit)
        .all();
    }
  };
}
