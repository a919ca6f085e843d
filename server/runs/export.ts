/**
 * Exports of a run's records. CSV is long format, one row per (snapshot, replica):
 * step, wall_ms, replica, the replica's setting when the run is a sweep (each swept parameter,
 * then seed), then one column per metric in the experiment's order. Non-finite
 * values are written as NaN / Inf / -Inf so spreadsheets and pandas read them back.
 */
import type { BodyRecord, HeaderRecord } from "./records.ts";
import type { SweepInfo } from "../experiments/sweep.ts";

function num(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Inf";
  if (x === -Infinity) return "-Inf";
  return String(x);
}

/** The swept parameters and `seed`: one column each, after `replica`, when the run is a sweep. */
function settingColumns(sweep: SweepInfo | undefined): string[] {
  return sweep ? [...sweep.params, "seed"] : [];
}

export function csvHeader(metrics: string[], sweep?: SweepInfo): string {
  return ["step", "wall_ms", "replica", ...settingColumns(sweep), ...metrics].join(",") + "\n";
}

export function snapshotCsvRows(
  metrics: string[],
  step: number,
  wallMs: number,
  values: Record<string, Float32Array>,
  sweep?: SweepInfo,
): string {
  const replicas = values[metrics[0]]?.length ?? 0;
  const columns = settingColumns(sweep);
  let out = "";
  for (let r = 0; r < replicas; r++) {
    out += `${step},${wallMs.toFixed(3)},${r}`;
    const setting = sweep?.settings[r];
    for (const c of columns) out += "," + csvCell(setting?.[c]);
    for (const m of metrics) out += "," + num(values[m]?.[r] ?? NaN);
    out += "\n";
  }
  return out;
}

function csvCell(v: number | string | undefined): string {
  if (v === undefined) return "";
  if (typeof v === "number") return num(v);
  return /[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

export function recordsToCsv(header: HeaderRecord, records: Iterable<BodyRecord>): string {
  let out = csvHeader(header.metrics, header.sweep);
  for (const r of records) {
    if (r.type === "snapshot") {
      out += snapshotCsvRows(header.metrics, r.step, r.wall_ms, r.metrics, header.sweep);
    }
  }
  return out;
}

/** JSON-friendly view of a record: typed arrays become plain arrays, NaN becomes null. */
export function recordToJson(r: unknown): unknown {
  return JSON.parse(JSON.stringify(r, (_k, v) => {
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      return Array.from(v as Float32Array, (x) => (Number.isFinite(x) ? x : null));
    }
    return v;
  }));
}
