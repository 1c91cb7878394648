import type { Profile } from "../config/schema.ts";
import type { AuthorityDeps } from "./deps.ts";
import { notFound } from "./errors.ts";

export function resolveProfile(deps: AuthorityDeps, name: string): Profile {
  const profile = deps.profiles.get(name);
  if (!profile) throw notFound("unknown_label", `no EST label "${name}" on this server`);
  return profile;
}
