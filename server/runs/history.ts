/**
 * History decimation: a run's snapshots over a step range, reduced to at most N buckets of
 * equal step width, each holding the minimum, maximum and last value per replica. Charts of
 * very long runs draw min–max bands from this, so a one-snapshot spike survives any zoom.
 */
import type { HistoryBucketStats, HistoryReply } from "../../client/protocol.ts";

export interface SnapshotLike {
  step: number;
  /** Compute time of the snapshot (see SnapshotRecord); NaN in the output when absent. */
  wall_ms?: number;
  metrics: Record<string, Float32Array>;
}

export interface DecimateOptions {
  /** Inclusive step range; defaults to the snapshots' own first and last step. */
  fromStep?: number;
  toStep?: number;
  /** Bucket count; absent (or at least the snapshot count) means one bucket per snapshot. */
  buckets?: number;
  metrics: string[];
  replicas: number;
}

/** One metric's buckets, as the stream sends them. */
export type BucketStats = HistoryBucketStats;

/** A decimated step range: the stream's history reply without its envelope (type, req, run). */
export type Decimated = Omit<HistoryReply, "type" | "req" | "run">;

/** Smaller of two values where NaN means "none yet" (NaN inputs are ignored). */
function lower(a: number, b: number): number {
  return Number.isNaN(b) ? a : Number.isNaN(a) || b < a ? b : a;
}

function higher(a: number, b: number): number {
  return Number.isNaN(b) ? a : Number.isNaN(a) || b > a ? b : a;
}

/**
 * Decimates snapshots sorted by step. Bucket b covers steps
 * [from + b·w, from + (b+1)·w) with w = (to − from + 1) / buckets; empty buckets are left out.
 * min and max ignore NaN (a diverged replica) unless every value in the bucket is NaN.
 */
export function decimate(snapshots: SnapshotLike[], opts: DecimateOptions): Decimated {
  const first = snapshots.length ? snapshots[0].step : 0;
  const lastStep = snapshots.length ? snapshots[snapshots.length - 1].step : 0;
  const from = opts.fromStep ?? first;
  const to = opts.toStep ?? lastStep;
  const inRange = snapshots.filter((s) => s.step >= from && s.step <= to);
  const count = inRange.length;
  const nb = opts.buckets === undefined ? count : Math.max(1, Math.min(opts.buckets, count));
  const raw = nb >= count;
  const width = (to - from + 1) / nb;
  const R = opts.replicas;

  // Assign buckets first, so output arrays are allocated at their final size.
  const bucketOf = new Int32Array(count);
  let used = 0;
  for (let i = 0; i < count; i++) {
    const b = raw ? i : Math.min(nb - 1, Math.floor((inRange[i].step - from) / width));
    bucketOf[i] = b;
    if (i === 0 || b !== bucketOf[i - 1]) used++;
  }

  const stepsFrom = new Float64Array(used);
  const stepsTo = new Float64Array(used);
  const wall = new Float64Array(used);
  const stats: Record<string, BucketStats> = {};
  for (const m of opts.metrics) {
    stats[m] = {
      min: new Float32Array(used * R).fill(NaN),
      max: new Float32Array(used * R).fill(NaN),
      last: new Float32Array(used * R).fill(NaN),
    };
  }

  let k = -1;
  for (let i = 0; i < count; i++) {
    const s = inRange[i];
    if (i === 0 || bucketOf[i] !== bucketOf[i - 1]) {
      k++;
      stepsFrom[k] = s.step;
    }
    stepsTo[k] = s.step;
    wall[k] = s.wall_ms ?? NaN;
    for (const m of opts.metrics) {
      const values = s.metrics[m];
      const st = stats[m];
      const base = k * R;
      for (let r = 0; r < R; r++) {
        const v = values && r < values.length ? values[r] : NaN;
        st.min[base + r] = lower(st.min[base + r], v);
        st.max[base + r] = higher(st.max[base + r], v);
        st.last[base + r] = v;
      }
    }
  }

  return {
    from_step: from,
    to_step: to,
    replicas: R,
    snapshots: count,
    buckets: used,
    steps_from: stepsFrom,
    steps_to: stepsTo,
    last_step: stepsTo.slice(),
    wall_ms: wall,
    metrics: stats,
  };
}
