/**
 * A small Prometheus registry: labelled counters kept in memory, and gauges and
 * histograms computed when scraped. Text exposition format 0.0.4.
 */

type Labels = Record<string, string>;

interface Family {
  help: string;
  type: "counter" | "gauge" | "histogram";
}

export interface Sample {
  labels?: Labels;
  value: number;
}

export interface HistogramValue {
  /** Upper bounds (le) with cumulative counts, +Inf excluded. */
  buckets: { le: number; count: number }[];
  count: number;
  sum: number;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelText(labels: Labels | undefined, extra?: Labels): string {
  const all = { ...labels, ...extra };
  const keys = Object.keys(all);
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabel(all[k] as string)}"`).join(",")}}`;
}

/** A label value from input we do not control: bounded, so a client cannot grow the registry. */
export function boundedLabel(value: string, allowed: readonly string[]): string {
  return allowed.includes(value) ? value : "other";
}

export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly counters = new Map<string, Map<string, { labels: Labels; value: number }>>();
  private readonly collectors = new Map<string, () => Promise<Sample[] | HistogramValue> | Sample[] | HistogramValue>();

  counter(name: string, help: string): (labels?: Labels, by?: number) => void {
    this.families.set(name, { help, type: "counter" });
    const series = new Map<string, { labels: Labels; value: number }>();
    this.counters.set(name, series);
    return (labels = {}, by = 1) => {
      const key = JSON.stringify(labels);
      const s = series.get(key);
      if (s) s.value += by;
      else series.set(key, { labels, value: by });
    };
  }

  gauge(name: string, help: string, collect: () => Promise<Sample[]> | Sample[]): void {
    this.families.set(name, { help, type: "gauge" });
    this.collectors.set(name, collect);
  }

  histogram(name: string, help: string, collect: () => Promise<HistogramValue> | HistogramValue): void {
    this.families.set(name, { help, type: "histogram" });
    this.collectors.set(name, collect);
  }

  /** The current value of a counter series (tests and the bench read it). */
  value(name: string, labels: Labels = {}): number {
    return this.counters.get(name)?.get(JSON.stringify(labels))?.value ?? 0;
  }

  async render(): Promise<string> {
    const lines: string[] = [];
    for (const [name, family] of this.families) {
      lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
      const series = this.counters.get(name);
      if (series) {
        for (const s of series.values()) lines.push(`${name}${labelText(s.labels)} ${s.value}`);
        continue;
      }
      const collected = await this.collectors.get(name)?.();
      if (!collected) continue;
      if (Array.isArray(collected)) {
        for (const s of collected) lines.push(`${name}${labelText(s.labels)} ${s.value}`);
      } else {
        for (const b of collected.buckets)
          lines.push(`${name}_bucket${labelText(undefined, { le: String(b.le) })} ${b.count}`);
        lines.push(
          `${name}_bucket{le="+Inf"} ${collected.count}`,
          `${name}_sum ${collected.sum}`,
          `${name}_count ${collected.count}`,
        );
      }
    }
    return `${lines.join("\n")}\n`;
  }
}
