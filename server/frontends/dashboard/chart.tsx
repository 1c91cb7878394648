/** @jsxImportSource hono/jsx */
import type { FC } from "hono/jsx";
import { plural } from "./format.ts";

/** A round upper bound for the y axis (1, 2, 5 × 10^n). */
export function niceMax(n: number): number {
  if (n <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/**
 * Certificate expiry over the coming days, drawn on the server: one bar per day (from
 * now), the first week in red. Each bar has a <title> with its figure.
 */
export const ExpiryChart: FC<{ byDay: number[]; now: Date }> = ({ byDay, now }) => {
  const width = 760;
  const height = 220;
  const left = 48;
  const bottom = 28;
  const top = 10;
  const plotW = width - left - 10;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...byDay));
  const step = plotW / Math.max(1, byDay.length);
  const barW = Math.max(1, step * 0.75);
  const total = byDay.reduce((a, b) => a + b, 0);
  const labelEvery = byDay.length <= 14 ? 1 : byDay.length <= 31 ? 5 : byDay.length <= 92 ? 10 : 30;
  // Five intervals of a 1-2-5 maximum: whole numbers.
  const ticks = [0, 1, 2, 3, 4, 5].map((i) => (max / 5) * i);
  const dayLabel = (i: number) => new Date(now.getTime() + i * 86_400_000).toISOString().slice(5, 10);
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-labelledby="expiry-chart-title"
      data-testid="expiry-chart"
    >
      <title id="expiry-chart-title">{`Certificates of active devices expiring per day over the next ${byDay.length} days: ${plural(total, "certificate")}`}</title>
      {ticks.map((t) => {
        const y = top + plotH - (t / max) * plotH;
        return (
          <g>
            <line class="grid" x1={left} x2={width - 10} y1={y} y2={y} />
            <text x={left - 6} y={y + 4} text-anchor="end">
              {t.toLocaleString("en-US")}
            </text>
          </g>
        );
      })}
      {byDay.map((n, i) => {
        const h = (n / max) * plotH;
        const x = left + i * step + (step - barW) / 2;
        return (
          <rect
            class={i < 7 ? "bar soon" : "bar"}
            x={x.toFixed(1)}
            y={(top + plotH - h).toFixed(1)}
            width={barW.toFixed(1)}
            height={h.toFixed(1)}
            data-day={i}
            data-count={n}
          >
            <title>{`${dayLabel(i)} (day ${i + 1}): ${plural(n, "certificate")}`}</title>
          </rect>
        );
      })}
      <line class="axis" x1={left} x2={width - 10} y1={top + plotH} y2={top + plotH} />
      {byDay.map((_, i) =>
        i % labelEvery === 0 ? (
          <text x={(left + i * step + step / 2).toFixed(1)} y={height - 10} text-anchor="middle">
            {dayLabel(i)}
          </text>
        ) : null,
      )}
    </svg>
  );
};
