import type { Profile } from "../../config/schema.ts";
import type { KeyDescription } from "../../pki/keys.ts";
import { badRequest } from "../errors.ts";

/** Refuses keys the profile does not accept; the message lists what it does accept. */
export function checkKeyAllowed(profile: Profile, key: KeyDescription): void {
  const allowed = profile.keyTypes
    .map((k) => (k === "RSA" ? `RSA ${profile.rsaMinBits}-${profile.rsaMaxBits}` : k))
    .join(", ");
  const refuse = (why: string) => badRequest("key_not_allowed", `${why}; profile ${profile.name} accepts ${allowed}`);
  switch (key.kind) {
    case "EC":
      if (key.curve === "P-256" || key.curve === "P-384") {
        if (!profile.keyTypes.includes(key.curve)) throw refuse(`key type ${key.label} is not allowed`);
        return;
      }
      throw refuse(`key type ${key.label} is not allowed`);
    case "Ed25519":
      if (!profile.keyTypes.includes("Ed25519")) throw refuse("key type Ed25519 is not allowed");
      return;
    case "RSA":
      if (!profile.keyTypes.includes("RSA")) throw refuse(`key type ${key.label} is not allowed`);
      if (key.bits < profile.rsaMinBits || key.bits > profile.rsaMaxBits) {
        throw refuse(`RSA key size ${key.bits} is not allowed`);
      }
      // Even exponents and e < 65537 are signs of a broken generator.
      if (key.exponent < 65537 || key.exponent % 2 === 0)
        throw refuse("RSA public exponent must be odd and at least 65537");
      return;
    default:
      throw refuse(`${key.label} is not allowed`);
  }
}
