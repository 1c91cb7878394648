/**
 * Device identities. A device id becomes one SPIFFE path segment, so it follows the
 * SPIFFE ID character rules (SPIFFE-ID §2.2: letters, digits, '.', '-', '_') and may
 * not be "." or "..".
 *
 * An appliance enrolled by a gateway has the inventory id `<gateway id>~<name>`: '~'
 * is outside the device id alphabet, so the id names its gateway unambiguously, the
 * gateway's appliances are one key range of the devices table, and its identity is
 * spiffe://<td>/gateway/<gateway id>/appliance/<name>.
 */
const SEGMENT = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";
const DEVICE_ID = new RegExp(`^${SEGMENT}$`);
const APPLIANCE_ID = new RegExp(`^(${SEGMENT})~(${SEGMENT})$`);

export const APPLIANCE_SEPARATOR = "~";

/** An id an operator may give a device (tokens, operator issuance, IDevID). */
export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID.test(id);
}

/** Any inventory id: a device's, or an appliance's `<gateway>~<name>`. */
export function isValidInventoryId(id: string): boolean {
  return DEVICE_ID.test(id) || APPLIANCE_ID.test(id);
}

/** The gateway and name of an appliance id, or undefined for a device's own id. */
export function applianceOf(id: string): { gateway: string; name: string } | undefined {
  const m = APPLIANCE_ID.exec(id);
  return m ? { gateway: m[1] as string, name: m[2] as string } : undefined;
}

export function applianceId(gateway: string, name: string): string {
  return `${gateway}${APPLIANCE_SEPARATOR}${name}`;
}

export function spiffeId(trustDomain: string, deviceId: string): string {
  const appliance = applianceOf(deviceId);
  if (appliance) return `spiffe://${trustDomain}/gateway/${appliance.gateway}/appliance/${appliance.name}`;
  return `spiffe://${trustDomain}/device/${deviceId}`;
}

/** The appliance a SPIFFE ID names, if it is spiffe://<td>/gateway/<gw>/appliance/<name>. */
export function parseApplianceSpiffeId(
  trustDomain: string,
  uri: string,
): { gateway: string; name: string } | undefined {
  const prefix = `spiffe://${trustDomain}/gateway/`;
  if (!uri.startsWith(prefix)) return undefined;
  const m = new RegExp(`^(${SEGMENT})/appliance/(${SEGMENT})$`).exec(uri.slice(prefix.length));
  return m ? { gateway: m[1] as string, name: m[2] as string } : undefined;
}

export const DEVICE_ID_RULE = "1-64 characters: letters, digits, '.', '-' or '_', starting with a letter or digit";
