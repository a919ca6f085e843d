/**
 * Exports of a run's records. CSV is long format, one row per (snapshot, replica):
 * step, wall_ms, replica, the replica's setting when the run is a sweep (each swept parameter,
 * then seed), then one column per metric in the experiment's order. Non-finite
 * values are written as NaN / Inf / -Inf so spreadsheets and pandas read them back.
 */
import type { BodyRecord, HeaderRecord, LogRecord, SnapshotsRecord } from "./records.ts";
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

/**
 * The rows snapshotCsvRows gives for rows [from, to) of a block, read from its columns (an
 * export of an every=1 run makes no object per snapshot).
 */
export function blockCsvRows(
  metrics: string[],
  b: SnapshotsRecord,
  from: number,
  to: number,
  sweep?: SweepInfo,
): string {
  const n = b.steps.length;
  const first = b.metrics[metrics[0]];
  const replicas = first ? first.length / n : 0;
  const columns = settingColumns(sweep);
  // Each replica's setting cells are the same on every row.
  const settings = Array.from({ length: replicas }, (_, r) => {
    const setting = sweep?.settings[r];
    return columns.map((c) => "," + csvCell(setting?.[c])).join("");
  });
  const values = metrics.map((m) => b.metrics[m]);
  let out = "";
  for (let i = from; i < to; i++) {
    const head = `${b.steps[i]},${b.wall_ms[i].toFixed(3)},`;
    for (let r = 0; r < replicas; r++) {
      out += head + r + settings[r];
      for (const v of values) out += "," + num(v?.[i * replicas + r] ?? NaN);
      out += "\n";
    }
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

/** Characters per piece of a streamed CSV export. */
const CSV_CHUNK = 65536;

/**
 * A run's CSV (header line first) in pieces of about 64 K characters, from its records as
 * logged (blocks taken column-wise), up to seq `lastSeq` (a live run: what was there when the
 * export began). The server's download and `lab export` both stream it.
 */
export async function* csvChunks(
  header: HeaderRecord,
  records: AsyncIterable<LogRecord>,
  lastSeq = Infinity,
): AsyncGenerator<string> {
  const { metrics, sweep } = header;
  let out = csvHeader(metrics, sweep);
  for await (const r of records) {
    if (r.seq > lastSeq) break;
    if (r.type === "snapshot") {
      out += snapshotCsvRows(metrics, r.step, r.wall_ms, r.metrics, sweep);
    } else if (r.type === "snapshots") {
      const rows = Math.min(r.steps.length, lastSeq - r.seq + 1);
      for (let i = 0; i < rows; i += 256) {
        out += blockCsvRows(metrics, r, i, Math.min(rows, i + 256), sweep);
        if (out.length >= CSV_CHUNK) yield out, out = "";
      }
    }
    if (out.length >= CSV_CHUNK) yield out, out = "";
  }
  if (out) yield out;
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
