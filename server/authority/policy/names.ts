import type { ParsedCsr } from "../../pki/csr.ts";
import { canonicalIp, isDnsName } from "../../pki/names.ts";
import { id_at_commonName } from "../../pki/oids.ts";
import type { DeclaredNames } from "../../ports/storage.ts";
import { badRequest, forbidden } from "../errors.ts";
import { applianceOf } from "../identity.ts";

/**
 * The server decides the names in a certificate; a CSR may only ask for the names the
 * device would get anyway (architecture: "a CSR asks, policy answers"). The subject
 * may be empty or CN=<device id> (an appliance's name also); the SAN may be empty, the
 * device's SPIFFE ID, or DNS names and IP addresses an operator declared for the
 * device — never a name the CSR alone asks for.
 */
export function checkRequestedNames(
  csr: ParsedCsr,
  deviceId: string,
  spiffe: string,
  limits: { maxRequestedNames: number },
  declared?: DeclaredNames | null,
): void {
  if (csr.requestedNames.length > limits.maxRequestedNames) {
    throw badRequest(
      "too_many_names",
      `CSR asks for ${csr.requestedNames.length} names; at most ${limits.maxRequestedNames}`,
    );
  }
  const cns = new Set([deviceId]);
  const appliance = applianceOf(deviceId);
  if (appliance) cns.add(appliance.name);
  for (const attr of csr.subject) {
    if (attr.type !== id_at_commonName) continue;
    if (!cns.has(attr.value)) {
      throw forbidden(
        "name_not_allowed",
        `CSR subject CN=${printable(attr.value)} is not this device; use CN=${deviceId} or an empty subject`,
      );
    }
  }
  for (const n of csr.requestedNames) {
    if (n.type === "uri" && n.value === spiffe) continue;
    if (n.type === "dns" && declared?.dns.includes(n.value.toLowerCase())) continue;
    if (n.type === "ip" && declared?.ip.includes(canonicalIp(n.value) ?? "")) continue;
    const extra =
      n.type === "dns" || n.type === "ip" ? "; an operator declares DNS and IP names with the device's token" : "";
    throw forbidden(
      "name_not_allowed",
      `CSR asks for ${n.type.toUpperCase()}:${printable(n.value)}, which is not this device's name (${spiffe})${extra}`,
    );
  }
}

/**
 * The names the edgeid server and its broker answer to: the configured host names, the
 * host of the public URL, an external broker's URL host and the names its certificate
 * covers, and the loopback names the listener certificate always carries. A device
 * certificate never carries one of them: agents accept a certificate from our CA with
 * serverAuth and a matching SAN as the EST server and the broker, so a device holding
 * such a certificate could impersonate the server to every other device.
 */
export interface ServiceNames {
  dns: ReadonlySet<string>;
  ip: ReadonlySet<string>;
}

export function serviceNames(names: readonly string[]): ServiceNames {
  const dns = new Set<string>(["localhost"]);
  const ip = new Set<string>(["127.0.0.1", "::1"]);
  for (const name of names) {
    const host = name
      .trim()
      .replace(/^\[|\]$/g, "")
      .toLowerCase();
    const canonical = canonicalIp(host);
    if (canonical) ip.add(canonical);
    else if (host) dns.add(host.replace(/\.$/, ""));
  }
  return { dns, ip };
}

/** The host of a URL, or nothing when it does not parse (the schema checked it). */
function hostOf(url: string | undefined): string[] {
  if (!url) return [];
  try {
    return [new URL(url).hostname];
  } catch {
    return [];
  }
}

/** The server's own names for these dependencies. */
export function serverNames(deps: {
  config: {
    hostnames: readonly string[];
    publicUrl?: string | undefined;
    mqtt?: { external?: { url: string; brokerHostnames?: string[] | undefined } | undefined };
  };
  publicUrl?: string;
}): ServiceNames {
  const external = deps.config.mqtt?.external;
  return serviceNames([
    ...deps.config.hostnames,
    ...hostOf(deps.publicUrl ?? deps.config.publicUrl),
    ...hostOf(external?.url),
    ...(external?.brokerHostnames ?? []),
  ]);
}

/** Refuses declared names that are the server's own (see `serviceNames`). */
export function refuseServiceNames(names: DeclaredNames | null | undefined, reserved: ServiceNames): void {
  if (!names) return;
  const taken = [...names.dns.filter((d) => reserved.dns.has(d)), ...names.ip.filter((a) => reserved.ip.has(a))];
  if (taken.length > 0) {
    throw forbidden(
      "name_reserved",
      `${taken.map(printable).join(", ")} ${taken.length === 1 ? "is a name" : "are names"} of the edgeid server itself; a device certificate cannot carry ${taken.length === 1 ? "it" : "them"}`,
    );
  }
}

/**
 * Operator-declared names, normalised (lowercase DNS, canonical IP text, no
 * duplicates) and checked: host names without wildcards, IPv4 or IPv6 addresses, at
 * most `max` in all, none of them the server's own. Undefined when none were given.
 */
export function declareNames(
  input: { dns?: readonly string[]; ip?: readonly string[] },
  max: number,
  reserved: ServiceNames,
): DeclaredNames | undefined {
  const dns = [...new Set((input.dns ?? []).map((d) => d.trim().toLowerCase()))];
  const ip: string[] = [];
  for (const d of dns) {
    if (!isDnsName(d)) {
      throw badRequest(
        "bad_dns_name",
        `"${printable(d)}" is not a host name (lowercase letters, digits and '-' in dot-separated labels; no wildcards)`,
      );
    }
  }
  for (const raw of input.ip ?? []) {
    const canonical = canonicalIp(raw.trim());
    if (!canonical) throw badRequest("bad_ip_address", `"${printable(raw)}" is not an IPv4 or IPv6 address`);
    if (!ip.includes(canonical)) ip.push(canonical);
  }
  if (dns.length + ip.length === 0) return undefined;
  if (dns.length + ip.length > max) {
    throw badRequest("too_many_names", `${dns.length + ip.length} names declared; at most ${max}`);
  }
  refuseServiceNames({ dns, ip }, reserved);
  return { dns, ip };
}

/** Names come from an attacker: keep them short and printable in messages. */
function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, "?");
  return clean.length > 80 ? `${clean.slice(0, 77)}...` : clean;
}

/** Declared names as an audit detail field: `{ names: "a.example.org,10.0.0.1" }`, or nothing. */
export function namesDetail(names: DeclaredNames | null | undefined): { names?: string } {
  return names ? { names: [...names.dns, ...names.ip].join(",") } : {};
}
