/**
 * The server's side of the MQTT broker: the embedded aedes broker in this process, or
 * a client connection to an external broker (Mosquitto).
 */
export interface FleetLink {
  /** Publishes as the server (QoS 1). */
  publish(topic: string, payload: string, opts: { retain: boolean }): Promise<void>;
  /**
   * Closes the live connections that use this certificate, without their last will.
   * Returns how many were closed; an external broker cannot close connections (it
   * refuses new ones once it has reloaded the CRL) and returns 0.
   */
  disconnect(serial: string, reason: string): Promise<number>;
  /** Devices connected now, if this link can tell. */
  connectedDevices(): number | undefined;
}

/** A message from a device, as the link received it. */
export interface InboundMessage {
  /** The device the message is from: the topic's device, checked against the publisher where the link can. */
  deviceId: string;
  topic: string;
  payload: Uint8Array;
  /**
   * Whether the connection that sent it is still the device's current one (a last will
   * of a connection that has since been replaced is not). External brokers: true.
   */
  currentConnection: boolean;
}

/** What became of one inbound message. */
export type MessageOutcome = "accepted" | "ignored" | "malformed" | "oversized" | "dropped" | "over_quota";

/** Most messages one bridge POST may carry. */
export const MAX_BRIDGED_MESSAGES = 500;
