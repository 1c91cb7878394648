import { commands, deviceEvents, deviceStatus, mqttSessions } from "../schema.ts";
import { MARK_USED } from "./certificates.ts";
import { raw, rowInsert, toDriver, type WriteTable, writeOfFields } from "./write-entry.ts";

/** Writes of what travels over MQTT: status reports, device events, commands and broker sessions. */
export const mqttWrites = {
  recordStatus: {
    statements: () => [
      // The session rule (ports/storage.ts recordStatus), decided inside the upsert.
      raw(
        `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, cert_serial, cert_not_after,
           key_alg, next_renew_at, agent_version, last_renew, source)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'device')
         ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, session = excluded.session,
           reported_at = excluded.reported_at, last_seen_at = max(device_status.last_seen_at, excluded.last_seen_at),
           cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after, key_alg = excluded.key_alg,
           next_renew_at = excluded.next_renew_at, agent_version = excluded.agent_version,
           last_renew = excluded.last_renew, source = 'device'
         WHERE excluded.session > device_status.session
           OR (excluded.session = device_status.session AND device_status.source = 'device'
               AND (excluded.reported_at >= device_status.reported_at OR ? = 1))`,
        "deviceId",
        "state",
        "session",
        "reportedAt",
        "lastSeenAt",
        "certSerial",
        "certNotAfter",
        "keyAlg",
        "nextRenewAt",
        "agentVersion",
        "lastRenew",
        "force",
      ),
      // A status report with a certificate of the device is a use of it.
      raw(`${MARK_USED} AND device_id = ?`, "lastSeenAt", "certSerial", "deviceId"),
    ],
    values: (w) => ({ ...toDriver(deviceStatus, w.status), force: w.force ? 1 : 0 }),
  },
  overwriteStatus: writeOfFields(
    raw(
      `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, source)
       VALUES (?, ?, 0, ?, 0, 'server')
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, reported_at = excluded.reported_at, source = 'server'`,
      "deviceId",
      "state",
      "at",
    ),
  ),
  touchDevice: writeOfFields(
    raw("UPDATE device_status SET last_seen_at = max(last_seen_at, ?) WHERE device_id = ?", "at", "deviceId"),
  ),
  insertEvent: {
    statements: () => [
      raw(
        `INSERT INTO device_events (device_id, event_id, type, at, received_at, body) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (device_id, event_id) DO NOTHING`,
        "deviceId",
        "eventId",
        "type",
        "at",
        "receivedAt",
        "body",
      ),
    ],
    values: (w) => toDriver(deviceEvents, w.event),
  },
  insertCommand: rowInsert(commands, (w) => w.command),
  markCommandSent: writeOfFields(
    raw("UPDATE commands SET state = 'sent', sent_at = ? WHERE op_id = ? AND state = 'queued'", "at", "opId"),
  ),
  commandResult: writeOfFields(
    raw(
      `UPDATE commands SET state = ?, result_at = ?, error = ?
       WHERE op_id = ? AND device_id = ? AND state IN ('queued', 'sent', 'expired')`,
      "state",
      "at",
      "error",
      "opId",
      "deviceId",
    ),
  ),
  expireCommands: writeOfFields(
    raw("UPDATE commands SET state = 'expired' WHERE state IN ('queued', 'sent') AND expires_at <= ?", "at"),
  ),
  openMqttSession: rowInsert(
    mqttSessions,
    (w) => w.session,
    // A connection with a certificate of the device is a use of it.
    raw(`${MARK_USED} AND device_id = ?`, "connectedAt", "serial", "deviceId"),
  ),
  closeMqttSession: writeOfFields(
    raw(
      "UPDATE mqtt_sessions SET disconnected_at = ?, close_reason = ? WHERE id = ? AND disconnected_at IS NULL",
      "at",
      "reason",
      "id",
    ),
  ),
  closeAllMqttSessions: writeOfFields(
    raw("UPDATE mqtt_sessions SET disconnected_at = ?, close_reason = ? WHERE disconnected_at IS NULL", "at", "reason"),
  ),
} satisfies Partial<WriteTable>;
