/** How the dashboard writes times and spans: UTC, to the minute, with a relative hint. */

export function when(value: Date | string | null | undefined): string {
  if (!value) return "—";
  const d = typeof value === "string" ? new Date(value) : value;
  if (Number.isNaN(d.getTime())) return "—";
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** "in 3 d 4 h", "12 min ago". */
export function relative(value: Date | string | null | undefined, now: Date): string {
  if (!value) return "";
  const d = typeof value === "string" ? new Date(value) : value;
  const s = Math.round((d.getTime() - now.getTime()) / 1000);
  if (Math.abs(s) < 5) return "just now";
  const text = span(Math.abs(s));
  return s >= 0 ? `in ${text}` : `${text} ago`;
}

export function span(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  const hours = Math.round(seconds / 3600);
  if (hours < 48) {
    const m = Math.round(seconds / 60) % 60;
    const h = Math.floor(Math.round(seconds / 60) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  const d = Math.floor(hours / 24);
  const h = hours % 24;
  return h ? `${d} d ${h} h` : `${d} d`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}

/**
 * One CSV field (RFC 4180 quoting). A field that a spreadsheet would take for a formula
 * (=, +, -, @, tab, CR) is prefixed with an apostrophe (OWASP's CSV injection advice).
 */
export function csvField(value: string | number | null | undefined): string {
  let s = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csv(rows: readonly (readonly (string | number | null | undefined)[])[]): string {
  return `${rows.map((r) => r.map(csvField).join(",")).join("\r\n")}\r\n`;
}
