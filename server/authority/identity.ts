/**
 * Device identities. A device id becomes one SPIFFE path segment, so it follows the
 * SPIFFE ID character rules (SPIFFE-ID §2.2: letters, digits, '.', '-', '_') and may
 * not be "." or "..".
 */
const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID.test(id);
}

export function spiffeId(trustDomain: string, deviceId: string): string {
  return `spiffe://${trustDomain}/device/${deviceId}`;
}

export const DEVICE_ID_RULE = "1-64 characters: letters, digits, '.', '-' or '_', starting with a letter or digit";
