/**
 * Merging the results of a run's shards back into the results of the whole run
 * (server/experiments/shard.ts, docs/sweeps.md "Shards"). A shard holding the whole run's
 * replicas [first, first + count) computes exactly what the whole run computes for them, but
 * numbers them 0..count−1: snapshot and frame rows are local, and so is the numeric `replica`
 * of its events (their `detail` texts already name the global replica). The merge is pure:
 *  - snapshots, by position (every shard advanced to the same targets reports the same steps):
 *    each metric's rows concatenated in replica order, `wallMs` the latest of the shards';
 *    the same for snapshots reported column-wise (mergeColumns), when any shard reports them so;
 *  - frames, by position likewise: rows concatenated in replica order;
 *  - events: `replica` moved by `first`, then ordered as one session orders them
 *    (eventOrder): by step; at one step, divergences before the events read from that step's
 *    snapshot (e.g. linear-label-noise's lazy escape); within each, by replica.
 * The threaded session (threaded_session.ts) merges each advance() of its workers with it; a
 * coordinator of shards on several machines can merge their records the same way.
 * Shards of experiments that emit whole-run events (values over all replicas, a stopping rule
 * for the whole batch) cannot be merged by this: they are not sharded (shard_state.ts).
 */
import type {
  AdvanceResult,
  Frame,
  RunEvent,
  Snapshot,
  SnapshotColumns,
} from "../experiments/types.ts";
import { columnsBuffer, columnsOf } from "./snapshot_columns.ts";

/** One shard's result, `first` its first replica in the whole run's numbering. */
export interface ShardResult {
  first: number;
  result: AdvanceResult;
}

/** Shard results (in replica order) as the whole run's one result. */
export function mergeShardResults(parts: ShardResult[]): AdvanceResult {
  const events = mergeEvents(parts.map((p) => ({ first: p.first, events: p.result.events })));
  const frames = mergeFrames(parts.map((p) => p.result.frames));
  if (parts.some((p) => p.result.columns)) {
    // Every shard reports the same form; should one not, its snapshots are converted.
    const columns = parts.map((p) =>
      p.result.columns ??
        columnsOf(p.result.snapshots, replicasOf(p.result))
    );
    return { snapshots: [], columns: mergeColumns(columns), events, frames };
  }
  return { snapshots: mergeSnapshots(parts.map((p) => p.result.snapshots)), events, frames };
}

/**
 * Columns of each shard (shards in replica order), merged row by row as mergeSnapshots merges
 * snapshots: each row's values of every shard concatenated in replica order, `wallMs` the
 * latest of the shards'.
 */
export function mergeColumns(shards: SnapshotColumns[]): SnapshotColumns {
  const [head, ...rest] = shards;
  if (!head) {
    return { replicas: 0, steps: new Float64Array(0), wallMs: new Float64Array(0), metrics: {} };
  }
  const n = head.steps.length;
  for (const other of rest) {
    if (other.steps.length !== n || !sameSteps(other.steps, head.steps)) {
      throw new Error(
        `shards out of step: snapshots at ${columnStepsOf(head)} and at ${columnStepsOf(other)}`,
      );
    }
  }
  const R = shards.reduce((sum, c) => sum + c.replicas, 0);
  const names = Object.keys(head.metrics);
  // One buffer for all the arrays: one allocation, and one buffer to transfer.
  const buffer = columnsBuffer(n * (16 + 4 * R * names.length));
  const steps = new Float64Array(buffer, 0, n);
  const wallMs = new Float64Array(buffer, 8 * n, n);
  steps.set(head.steps);
  wallMs.set(head.wallMs);
  for (const other of rest) {
    for (let i = 0; i < n; i++) if (other.wallMs[i] > wallMs[i]) wallMs[i] = other.wallMs[i];
  }
  const metrics: Record<string, Float32Array> = {};
  names.forEach((name, q) => {
    const out = new Float32Array(buffer, 16 * n + 4 * q * n * R, n * R);
    let offset = 0; // the shard's first replica in a row
    for (const c of shards) {
      interleaveRows(out, offset, R, c.metrics[name], c.replicas, n);
      offset += c.replicas;
    }
    metrics[name] = out;
  });
  return { replicas: R, steps, wallMs, metrics };
}

/** Whether two shards' snapshot steps are the same (a plain loop: a row costs little here). */
function sameSteps(a: Float64Array, b: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Row i of `part` (width `width`) into out[i·stride + offset …]; a missing part reads NaN.
 * A function of its own with plain loops, so V8 optimises it whole.
 */
function interleaveRows(
  out: Float32Array,
  offset: number,
  stride: number,
  part: Float32Array | undefined,
  width: number,
  rows: number,
): void {
  if (!part) {
    for (let i = 0, d = offset; i < rows; i++, d += stride) out.fill(NaN, d, d + width);
    return;
  }
  if (width === 1) {
    for (let i = 0, d = offset; i < rows; i++, d += stride) out[d] = part[i];
    return;
  }
  if (width === 2) {
    for (let i = 0, s = 0, d = offset; i < rows; i++, s += 2, d += stride) {
      out[d] = part[s];
      out[d + 1] = part[s + 1];
    }
    return;
  }
  for (let i = 0, s = 0, d = offset; i < rows; i++, s += width, d += stride) {
    for (let r = 0; r < width; r++) out[d + r] = part[s + r];
  }
}

/** Snapshots of each shard (shards in replica order), merged step by step. */
export function mergeSnapshots(shards: Snapshot[][]): Snapshot[] {
  const [head, ...rest] = shards;
  if (!head) return [];
  for (const other of rest) {
    if (other.length !== head.length || other.some((s, i) => s.step !== head[i].step)) {
      throw new Error(
        `shards out of step: snapshots at ${stepsOf(head)} and at ${stepsOf(other)}`,
      );
    }
  }
  return head.map((first, i) => {
    const metrics: Record<string, Float32Array> = {};
    for (const name of Object.keys(first.metrics)) {
      metrics[name] = concatRows(shards.map((s) => s[i].metrics[name]));
    }
    return { step: first.step, wallMs: Math.max(...shards.map((s) => s[i].wallMs)), metrics };
  });
}

/** Frames of each shard (shards in replica order), merged frame by frame. */
export function mergeFrames(shards: Frame[][]): Frame[] {
  const [head, ...rest] = shards;
  if (!head) return [];
  for (const other of rest) {
    if (
      other.length !== head.length ||
      other.some((f, i) =>
        f.step !== head[i].step || f.name !== head[i].name || f.width !== head[i].width
      )
    ) throw new Error("shards out of step: their frames differ in step, name or width");
  }
  return head.map((f, i) => ({ ...f, values: concatRows(shards.map((s) => s[i].values)) }));
}

/** Events of each shard with `replica` made global, in the order one session gives them. */
export function mergeEvents(shards: { first: number; events: RunEvent[] }[]): RunEvent[] {
  const out: RunEvent[] = [];
  for (const { first, events } of shards) {
    for (const e of events) {
      out.push(
        "replica" in e && typeof e.replica === "number" ? { ...e, replica: e.replica + first } : e,
      );
    }
  }
  return out.sort(eventOrder); // stable: events without a replica keep their order
}

/**
 * The order of a run's events as one session and the driver give them: by step; at one step,
 * events about no replica first (the driver's planned events: learning-rate changes), then
 * divergences (found after the update that ends at the step), then the events read from the
 * snapshot at the step; by replica.
 */
export function eventOrder(a: RunEvent, b: RunEvent): number {
  return a.step - b.step || rank(a) - rank(b) || replicaOf(a) - replicaOf(b);
}

function rank(e: RunEvent): number {
  if (replicaOf(e) < 0) return 0;
  return e.type === "replica_diverged" ? 1 : 2;
}

function replicaOf(e: RunEvent): number {
  return "replica" in e && typeof e.replica === "number" ? e.replica : -1;
}

/** Row blocks of consecutive replicas, one after the other. */
export function concatRows(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Replicas of a result reported as snapshots (the length of a metric's values). */
function replicasOf(result: AdvanceResult): number {
  const first = result.snapshots[0];
  return first ? Object.values(first.metrics)[0]?.length ?? 0 : 0;
}

function columnStepsOf(c: SnapshotColumns): string {
  return `[${Array.from(c.steps).join(", ")}]`;
}

function stepsOf(snapshots: Snapshot[]): string {
  return `[${snapshots.map((s) => s.step).join(", ")}]`;
}
