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

/** A piece of history: one snapshot, or a summary block of consecutive snapshots. */
export interface HistoryPiece {
  stepFrom: number;
  stepTo: number;
  /** wall_ms of the last snapshot. */
  wall: number;
  /** Snapshots it covers. */
  count: number;
  /** Per metric: min, max and last per replica (for one snapshot, the same array thrice). */
  stats(
    metric: string,
  ): { min: ArrayLike<number>; max: ArrayLike<number>; last: ArrayLike<number> };
}

/**
 * Folds pieces, in step order, into buckets of equal step width: bucket b covers steps
 * [from + b·w, from + (b+1)·w) with w = (to − from + 1) / buckets, and a piece goes to the
 * bucket of its first step. Memory is buckets × metrics × replicas, whatever the run's length.
 * `raw` gives every piece its own bucket (when there are no more pieces than buckets).
 */
export class BucketAccumulator {
  #stepsFrom: Float64Array;
  #stepsTo: Float64Array;
  #wall: Float64Array;
  #stats: Record<string, BucketStats> = {};
  #k = -1;
  #lastBucket = -1;
  #count = 0;
  #width: number;

  constructor(
    readonly from: number,
    readonly to: number,
    readonly buckets: number,
    readonly raw: boolean,
    readonly metrics: string[],
    readonly replicas: number,
  ) {
    this.#width = (to - from + 1) / buckets;
    this.#stepsFrom = new Float64Array(buckets);
    this.#stepsTo = new Float64Array(buckets);
    this.#wall = new Float64Array(buckets);
    for (const m of metrics) {
      this.#stats[m] = {
        min: new Float32Array(buckets * replicas).fill(NaN),
        max: new Float32Array(buckets * replicas).fill(NaN),
        last: new Float32Array(buckets * replicas).fill(NaN),
      };
    }
  }

  add(p: HistoryPiece): void {
    const b = this.raw
      ? this.#count
      : Math.min(this.buckets - 1, Math.max(0, Math.floor((p.stepFrom - this.from) / this.#width)));
    this.#count += p.count;
    if (b !== this.#lastBucket) {
      this.#k++;
      this.#lastBucket = b;
      this.#stepsFrom[this.#k] = p.stepFrom;
    }
    const k = this.#k;
    this.#stepsTo[k] = p.stepTo;
    this.#wall[k] = p.wall;
    const R = this.replicas;
    const base = k * R;
    for (const m of this.metrics) {
      const src = p.stats(m);
      const st = this.#stats[m];
      for (let r = 0; r < R; r++) {
        const inRange = r < src.last.length;
        st.min[base + r] = lower(st.min[base + r], inRange ? src.min[r] : NaN);
        st.max[base + r] = higher(st.max[base + r], inRange ? src.max[r] : NaN);
        st.last[base + r] = inRange ? src.last[r] : NaN;
      }
    }
  }

  result(): Decimated {
    const used = this.#k + 1;
    const R = this.replicas;
    const metrics: Record<string, BucketStats> = {};
    for (const m of this.metrics) {
      const st = this.#stats[m];
      metrics[m] = {
        min: st.min.slice(0, used * R),
        max: st.max.slice(0, used * R),
        last: st.last.slice(0, used * R),
      };
    }
    const stepsTo = this.#stepsTo.slice(0, used);
    return {
      from_step: this.from,
      to_step: this.to,
      replicas: R,
      snapshots: this.#count,
      buckets: used,
      steps_from: this.#stepsFrom.slice(0, used),
      steps_to: stepsTo,
      last_step: stepsTo.slice(),
      wall_ms: this.#wall.slice(0, used),
      metrics,
    };
  }
}

/** A snapshot as a history piece. */
export function snapshotPiece(s: SnapshotLike): HistoryPiece {
  const none = new Float32Array(0);
  return {
    stepFrom: s.step,
    stepTo: s.step,
    wall: s.wall_ms ?? NaN,
    count: 1,
    stats(m) {
      const v = s.metrics[m] ?? none;
      return { min: v, max: v, last: v };
    },
  };
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
  const acc = new BucketAccumulator(
    from,
    to,
    Math.max(1, nb),
    nb >= count,
    opts.metrics,
    opts.replicas,
  );
  for (const s of inRange) acc.add(snapshotPiece(s));
  return acc.result();
}
