const UNIT_SECONDS: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1 };

/** "72h", "5m", "30d", "1h30m", "90s" → seconds. */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (!/^(\d+[dhms])+$/.test(trimmed)) throw new Error(`invalid duration "${text}" (use e.g. 72h, 30m, 7d)`);
  let total = 0;
  for (const m of trimmed.matchAll(/(\d+)([dhms])/g)) total += Number(m[1]) * (UNIT_SECONDS[m[2] as string] as number);
  return total;
}

export function formatDuration(seconds: number): string {
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of Object.entries(UNIT_SECONDS)) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join("") || "0s";
}

export function isDuration(text: string): boolean {
  try {
    parseDuration(text);
    return true;
  } catch {
    return false;
  }
}
