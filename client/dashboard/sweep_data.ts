/**
 * The sweep view's numbers: a metric per replica at one step (the final one, the one under
 * the time charts' cursor, or each replica's best so far), tagged with its setting's swept
 * values and seed; then grouped for a chart against one parameter (mean and min–max over
 * seeds of each setting) or a heatmap over two (mean over seeds per cell). Settings are
 * never averaged together: a heatmap refuses when a third parameter varies. Pure functions.
 */
import type { RunSeries } from "./series.ts";
import { formatValue, paramSymbol, type RunSettings, type SweepValue } from "./settings.ts";

export type SweepAt = "final" | "cursor" | "best";
export const SWEEP_AT: readonly SweepAt[] = ["final", "cursor", "best"];

export interface SweepSource {
  run: string;
  label: string;
  /** The run's algorithm (the categorical axis when runs are compared). */
  algo?: string;
  settings: RunSettings | null;
  series: RunSeries;
}

export interface SweepPoint {
  run: string;
  /** The run's label (its name, else its algorithm), for lines that tell runs apart. */
  runLabel?: string;
  replica: number;
  seed: number;
  /** Swept values of its setting, and `algo` when the run has one. */
  values: Record<string, SweepValue>;
  step: number;
  value: number;
}

export type AxisKind = "log" | "linear" | "category";

/** Whether larger is better for a metric (accuracies); otherwise smaller (losses, errors). */
export function largerIsBetter(metric: string): boolean {
  return /accuracy|alignment|_cos$/.test(metric);
}

/** Row of a series at a step: the last row at or before it (final: the last row). */
function rowAt(s: RunSeries, at: SweepAt, cursorStep: number | null): number {
  if (s.n === 0) return -1;
  if (at !== "cursor" || cursorStep === null) return s.n - 1;
  const i = s.indexAtOrAfter(cursorStep);
  if (i < s.n && s.step[i] === cursorStep) return i;
  return i - 1;
}

/** One point per replica of every source that has the metric. */
export function sweepPoints(
  sources: SweepSource[],
  metric: string,
  at: SweepAt,
  cursorStep: number | null,
): SweepPoint[] {
  const out: SweepPoint[] = [];
  const larger = largerIsBetter(metric);
  for (const src of sources) {
    const s = src.series, cols = s.cols.get(metric);
    if (!cols) continue;
    const row = rowAt(s, at, cursorStep);
    if (row < 0) continue;
    const R = s.replicas;
    for (let r = 0; r < R; r++) {
      let value: number = cols.last[row * R + r];
      if (at === "best") {
        value = NaN;
        const col = larger ? cols.max : cols.min;
        for (let i = 0; i <= row; i++) {
          const v = col[i * R + r];
          if (!Number.isFinite(v)) continue;
          if (Number.isNaN(value) || (larger ? v > value : v < value)) value = v;
        }
      }
      const setting = src.settings?.settings[src.settings.settingOf[r]];
      const values: Record<string, SweepValue> = { ...(setting?.values ?? {}) };
      if (src.algo !== undefined && !("algo" in values)) values.algo = src.algo;
      out.push({
        run: src.run,
        runLabel: src.label,
        replica: r,
        seed: src.settings ? src.settings.seedOf[r] : r,
        values,
        step: s.step[row],
        value,
      });
    }
  }
  return out;
}

/** Parameters that take more than one value over the points, in first-seen order. */
export function varyingParams(points: SweepPoint[]): string[] {
  const seen = new Map<string, Set<string>>();
  for (const p of points) {
    for (const [k, v] of Object.entries(p.values)) {
      if (!seen.has(k)) seen.set(k, new Set());
      seen.get(k)!.add(JSON.stringify(v));
    }
  }
  return [...seen].filter(([, vs]) => vs.size > 1).map(([k]) => k);
}

/** The parameters the runs vary (swept ones, and `algo` when compared runs differ in it). */
export function sweepParams(sources: SweepSource[]): string[] {
  const points: SweepPoint[] = [];
  for (const s of sources) {
    const rs = s.settings;
    for (let r = 0; r < s.series.replicas; r++) {
      const values: Record<string, SweepValue> = {
        ...(rs?.settings[rs.settingOf[r]].values ?? {}),
      };
      if (s.algo !== undefined && !("algo" in values)) values.algo = s.algo;
      points.push({ run: s.run, replica: r, seed: 0, values, step: 0, value: NaN });
    }
  }
  return varyingParams(points);
}

/** How an axis over a parameter is drawn: strings are categories; numbers log if so swept. */
export function axisKind(
  points: SweepPoint[],
  param: string,
  scales: Record<string, "log" | "linear">,
): AxisKind {
  const vs = points.map((p) => p.values[param]);
  if (vs.some((v) => typeof v !== "number")) return "category";
  return scales[param] === "log" && vs.every((v) => (v as number) > 0) ? "log" : "linear";
}

/** Distinct values of a parameter over the points, sorted (numbers ascending). */
export function paramValues(points: SweepPoint[], param: string): SweepValue[] {
  const vs = [...new Map(points.map((p) => [JSON.stringify(p.values[param]), p.values[param]]))
    .values()];
  return vs.sort((a, b) =>
    typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))
  );
}

export interface SweepStat {
  x: SweepValue;
  mean: number;
  lo: number;
  hi: number;
  /** The seeds' values (finite ones count towards mean, lo, hi). */
  seeds: number[];
}

export interface SweepLine {
  /** What the points of this line share besides x: other parameters' values, the run. */
  key: string;
  label: string;
  stats: SweepStat[];
}

function stat(x: SweepValue, seeds: number[]): SweepStat {
  const finite = seeds.filter(Number.isFinite);
  let sum = 0;
  for (const v of finite) sum += v;
  return {
    x,
    mean: finite.length ? sum / finite.length : NaN,
    lo: finite.length ? Math.min(...finite) : NaN,
    hi: finite.length ? Math.max(...finite) : NaN,
    seeds,
  };
}

/**
 * One line per combination of the other varying parameters (and per run when several runs
 * share a setting), its points the settings along `x`, each the mean and band over seeds.
 */
export function sweepLines(points: SweepPoint[], x: string): SweepLine[] {
  const others = varyingParams(points).filter((p) => p !== x);
  const runs = new Set(points.map((p) => p.run));
  const lines = new Map<string, { label: string; byX: Map<string, SweepPoint[]> }>();
  for (const p of points) {
    if (!(x in p.values)) continue;
    const parts = others.filter((o) => o in p.values).map((o) =>
      `${paramSymbol(o)}=${formatValue(p.values[o])}`
    );
    const byRun = runs.size > 1 && !others.includes("algo");
    const key = JSON.stringify([parts, byRun ? p.run : ""]);
    if (!lines.has(key)) {
      // Lines of different runs with the same setting are told apart by the run's label.
      const label = [...parts, ...(byRun ? [p.runLabel ?? p.run] : [])].join(" · ");
      lines.set(key, { label, byX: new Map() });
    }
    const byX = lines.get(key)!.byX;
    const k = JSON.stringify(p.values[x]);
    if (!byX.has(k)) byX.set(k, []);
    byX.get(k)!.push(p);
  }
  return [...lines].map(([key, l]) => {
    const stats = [...l.byX.values()].map((ps) => stat(ps[0].values[x], ps.map((p) => p.value)));
    stats.sort((a, b) =>
      typeof a.x === "number" && typeof b.x === "number"
        ? a.x - b.x
        : String(a.x).localeCompare(String(b.x))
    );
    return { key, label: l.label, stats };
  });
}

export interface HeatmapCell {
  x: SweepValue;
  y: SweepValue;
  mean: number;
  lo: number;
  hi: number;
  seeds: number[];
}

export interface Heatmap {
  xs: SweepValue[];
  ys: SweepValue[];
  cells: HeatmapCell[];
}

/**
 * Cells over two parameters, each the mean over its setting's seeds; an error message
 * instead when another parameter varies too (its settings would be averaged together).
 */
export function sweepHeatmap(points: SweepPoint[], x: string, y: string): Heatmap | string {
  const extra = varyingParams(points).filter((p) => p !== x && p !== y);
  if (extra.length) {
    return `a heatmap over ${x} × ${y} would average over ${extra.join(", ")}: ` +
      `show runs where only ${x} and ${y} vary`;
  }
  const at = points.filter((p) => x in p.values && y in p.values);
  const groups = new Map<string, SweepPoint[]>();
  for (const p of at) {
    const k = JSON.stringify([p.values[x], p.values[y]]);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(p);
  }
  const cells = [...groups.values()].map((ps) => {
    const s = stat(ps[0].values[x], ps.map((p) => p.value));
    return {
      x: ps[0].values[x],
      y: ps[0].values[y],
      mean: s.mean,
      lo: s.lo,
      hi: s.hi,
      seeds: s.seeds,
    };
  });
  return { xs: paramValues(at, x), ys: paramValues(at, y), cells };
}

/** The points as CSV: run, swept values, seed, replica, step, the metric. */
export function sweepCsv(points: SweepPoint[], metric: string): string {
  const params = [...new Set(points.flatMap((p) => Object.keys(p.values)))];
  const cell = (v: unknown) => {
    const s = v === undefined ? "" : String(v);
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [["run", ...params, "seed", "replica", "step", metric].join(",")];
  for (const p of points) {
    lines.push(
      [p.run, ...params.map((k) => p.values[k]), p.seed, p.replica, p.step, p.value].map(cell)
        .join(","),
    );
  }
  return lines.join("\n") + "\n";
}
