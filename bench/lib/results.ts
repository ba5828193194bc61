// The figures of bench/compare.ts: one row per workload and tool, several rounds each, printed as
// a Markdown table with min / median / max, the ratio to kcopyd and the peak RSS.

/** One workload × tool. */
export interface Row {
  workload: string;
  tool: string;
  unit: "GiB/s" | "chunks/s";
  values: number[];
  rssKiB: number[];
}

/** Min, median (mean of the middle two for an even count) and max. */
export function stats(v: number[]): { min: number; med: number; max: number } {
  const s = [...v].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const med = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], med, max: s[s.length - 1] };
}

/** Collected rows, in the order they were first recorded. */
export class Results {
  readonly rows = new Map<string, Row>();

  /** Adds one measurement. */
  record(workload: string, tool: string, unit: Row["unit"], value: number, rssKiB: number): void {
    const key = `${workload}|${tool}`;
    const row = this.rows.get(key) ?? { workload, tool, unit, values: [], rssKiB: [] };
    row.values.push(value);
    row.rssKiB.push(rssKiB);
    this.rows.set(key, row);
  }

  /** The median of one row, or undefined when it was not measured. */
  median(workload: string, tool: string): number | undefined {
    const row = this.rows.get(`${workload}|${tool}`);
    return row ? stats(row.values).med : undefined;
  }

  /** Rows of one workload. */
  of(workload: string): Row[] {
    return [...this.rows.values()].filter((r) => r.workload === workload);
  }

  /** The Markdown table; ratios are against the workload's "kcopyd (library)" row. */
  table(): string {
    const fmt = (v: number, unit: string) =>
      unit === "GiB/s" ? v.toFixed(2) : Math.round(v).toLocaleString("en-US");
    const lines = [
      "| workload | tool | min | median | max | unit | vs kcopyd | peak RSS |",
      "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ];
    const workloads = new Set([...this.rows.values()].map((r) => r.workload));
    for (const w of workloads) {
      const rs = this.of(w);
      const base = rs.find((r) => r.tool === "kcopyd (library)") ??
        rs.find((r) => r.tool.startsWith("kcopyd"));
      const baseMed = base ? stats(base.values).med : 0;
      for (const r of rs) {
        const s = stats(r.values);
        const rss = Math.max(...r.rssKiB);
        const ratio = baseMed ? `${(s.med / baseMed).toFixed(2)}×` : "";
        const mem = rss ? `${(rss / 1024).toFixed(0)} MiB` : "n/a";
        lines.push(
          `| ${w} | ${r.tool} | ${fmt(s.min, r.unit)} | ${fmt(s.med, r.unit)} | ` +
            `${fmt(s.max, r.unit)} | ${r.unit} | ${ratio} | ${mem} |`,
        );
      }
    }
    return lines.join("\n");
  }
}
