/**
 * Column store of one run's metric history, in typed arrays (no per-point objects).
 * A row is a bucket of steps [stepFrom, stepTo] with, per metric and replica, the min, max
 * and last value inside it; a streamed snapshot is a bucket of one step (min = max = last).
 * The server's history answer (a zoomed window, re-bucketed) has the same shape, so both
 * are drawn by the same code. Per row we also keep the replica summary the charts draw, per
 * group of replicas (a sweep setting's seeds; one group of all replicas for a plain run):
 * mean of the last values over finite replicas, and the band lo/hi = min/max over them.
 * Summaries are stored row-major with one column per group (index row·G + g).
 *
 * Memory stays bounded: past `maxRows` rows, adjacent pairs merge (min of mins, max of maxes,
 * the later last), so long runs keep full detail at the live end and coarser detail behind;
 * zooming in asks the server for the window at full resolution.
 */
import { DebiasedEma } from "./smoothing.ts";

export class MetricColumns {
  /** Groups: replica indices summarised together (sweep settings). */
  readonly groups: number[][];
  min: Float32Array;
  max: Float32Array;
  last: Float32Array;
  mean: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
  /** Smoothed mean and smoothed replicas (last values), computed causally on arrival. */
  smooth: Float64Array;
  smoothRep: Float64Array;

  constructor(cap: number, readonly replicas: number, groups?: number[][]) {
    this.groups = groups ?? [Array.from({ length: replicas }, (_, r) => r)];
    const G = this.groups.length;
    this.min = new Float32Array(cap * replicas);
    this.max = new Float32Array(cap * replicas);
    this.last = new Float32Array(cap * replicas);
    this.mean = new Float64Array(cap * G);
    this.lo = new Float64Array(cap * G);
    this.hi = new Float64Array(cap * G);
    this.smooth = new Float64Array(cap * G);
    this.smoothRep = new Float64Array(cap * replicas);
  }

  grow(cap: number, n: number): void {
    const R = this.replicas, G = this.groups.length;
    const f32 = (a: Float32Array, w: number) => {
      const b = new Float32Array(cap * w);
      b.set(a.subarray(0, n * w));
      return b;
    };
    const f64 = (a: Float64Array, w: number) => {
      const b = new Float64Array(cap * w);
      b.set(a.subarray(0, n * w));
      return b;
    };
    this.min = f32(this.min, R);
    this.max = f32(this.max, R);
    this.last = f32(this.last, R);
    this.mean = f64(this.mean, G);
    this.lo = f64(this.lo, G);
    this.hi = f64(this.hi, G);
    this.smooth = f64(this.smooth, G);
    this.smoothRep = f64(this.smoothRep, R);
  }
}

/**
 * Per group: mean over finite values, and min/max over finite values; NaN when none is
 * finite. A group never reads another group's replicas (settings are never averaged).
 */
function summarise(cols: MetricColumns, row: number): void {
  const R = cols.replicas, G = cols.groups.length;
  for (let g = 0; g < G; g++) {
    let sum = 0, count = 0, lo = Infinity, hi = -Infinity;
    for (const r of cols.groups[g]) {
      const last = cols.last[row * R + r];
      if (Number.isFinite(last)) {
        sum += last;
        count++;
      }
      const mn = cols.min[row * R + r], mx = cols.max[row * R + r];
      if (Number.isFinite(mn) && mn < lo) lo = mn;
      if (Number.isFinite(mx) && mx > hi) hi = mx;
    }
    cols.mean[row * G + g] = count ? sum / count : NaN;
    cols.lo[row * G + g] = lo === Infinity ? NaN : lo;
    cols.hi[row * G + g] = hi === -Infinity ? NaN : hi;
  }
}

/** How a series summarises its replicas and which metrics it smooths. */
export interface SeriesLayout {
  /** Replica groups drawn as one line each (sweep settings); default: all replicas, one line. */
  groups?: number[][];
  /** Metrics never smoothed (step functions: a learning rate, a phase, a count). */
  unsmoothed?: ReadonlySet<string>;
}

export interface HistoryWindow {
  steps_from: Float64Array;
  steps_to: Float64Array;
  last_step: Float64Array;
  wall_ms?: Float64Array;
  metrics: Record<string, { min: Float32Array; max: Float32Array; last: Float32Array }>;
}

export class RunSeries {
  n = 0;
  /** Bumped on every change; views compare it to skip work. */
  version = 0;
  stepFrom: Float64Array;
  stepTo: Float64Array;
  step: Float64Array;
  wall: Float64Array;
  readonly cols = new Map<string, MetricColumns>();
  private cap: number;
  private beta = 0;
  private emaMean = new Map<string, DebiasedEma[]>();
  private emaRep = new Map<string, DebiasedEma[]>();

  constructor(
    readonly metrics: string[],
    readonly replicas: number,
    readonly maxRows = 4096,
    initialCap = 64,
    readonly layout: SeriesLayout = {},
  ) {
    this.cap = Math.min(initialCap, maxRows);
    this.stepFrom = new Float64Array(this.cap);
    this.stepTo = new Float64Array(this.cap);
    this.step = new Float64Array(this.cap);
    this.wall = new Float64Array(this.cap);
    for (const m of metrics) this.cols.set(m, new MetricColumns(this.cap, replicas, layout.groups));
    this.resetSmoothers();
  }

  /** Number of replica groups (lines per chart). */
  get groupCount(): number {
    return this.layout.groups?.length ?? 1;
  }

  get lastStep(): number {
    return this.n ? this.step[this.n - 1] : -Infinity;
  }

  get smoothing(): number {
    return this.beta;
  }

  /** Appends one streamed snapshot; snapshots at or before the last stored step are ignored. */
  appendSnapshot(
    step: number,
    wallMs: number,
    metrics: Record<string, ArrayLike<number>>,
  ): boolean {
    if (step <= this.lastStep) return false;
    if (this.n === this.cap) this.makeRoom();
    const i = this.n, R = this.replicas;
    this.stepFrom[i] = this.stepTo[i] = this.step[i] = step;
    this.wall[i] = wallMs;
    for (const [name, cols] of this.cols) {
      const v = metrics[name];
      for (let r = 0; r < R; r++) {
        const x = v && r < v.length ? v[r] : NaN;
        cols.min[i * R + r] = cols.max[i * R + r] = cols.last[i * R + r] = x;
      }
      summarise(cols, i);
      this.smoothRow(name, cols, i);
    }
    this.n++;
    this.version++;
    return true;
  }

  /**
   * Builds a series from a history answer (bucketed rows); wall times come from the answer
   * when it has them, else from `wallOf`. `maxRows` leaves room to keep appending live
   * snapshots (a rebuilt live series); a zoom window needs none.
   */
  static fromHistory(
    metrics: string[],
    replicas: number,
    h: HistoryWindow,
    wallOf: (step: number) => number,
    maxRows = 0,
    layout: SeriesLayout = {},
  ): RunSeries {
    const n = h.last_step.length;
    const s = new RunSeries(metrics, replicas, Math.max(n, maxRows, 1), Math.max(n, 1), layout);
    const R = replicas;
    for (let i = 0; i < n; i++) {
      s.stepFrom[i] = h.steps_from[i];
      s.stepTo[i] = h.steps_to[i];
      s.step[i] = h.last_step[i];
      s.wall[i] = h.wall_ms ? h.wall_ms[i] : wallOf(h.last_step[i]);
    }
    for (const [name, cols] of s.cols) {
      const m = h.metrics[name];
      if (!m) {
        cols.min.fill(NaN);
        cols.max.fill(NaN);
        cols.last.fill(NaN);
      } else {
        cols.min.set(m.min.subarray(0, n * R));
        cols.max.set(m.max.subarray(0, n * R));
        cols.last.set(m.last.subarray(0, n * R));
      }
      for (let i = 0; i < n; i++) summarise(cols, i);
    }
    s.n = n;
    s.version++;
    return s;
  }

  /** Changes the smoothing factor, recomputing the smoothed columns from the stored rows. */
  setSmoothing(beta: number, force = false): void {
    if (beta === this.beta && !force) return;
    this.beta = beta;
    this.resetSmoothers();
    for (const [name, cols] of this.cols) {
      for (let i = 0; i < this.n; i++) this.smoothRow(name, cols, i);
    }
    this.version++;
  }

  /** Wall-clock ms at a step, interpolated between stored rows (for events and history). */
  wallAt(step: number): number {
    const n = this.n;
    if (n === 0) return NaN;
    const i = this.indexAtOrAfter(step);
    if (i >= n) return this.wall[n - 1];
    if (i === 0 || this.step[i] === step) return this.wall[i];
    const s0 = this.step[i - 1], s1 = this.step[i];
    return this.wall[i - 1] + (this.wall[i] - this.wall[i - 1]) * (step - s0) / (s1 - s0);
  }

  /**
   * Steps per second of compute over the last `rows` rows (wall_ms is compute time since
   * the run started), or null before two rows.
   */
  stepsPerSecond(rows = 10): number | null {
    if (this.n < 2) return null;
    const b = this.n - 1, a = Math.max(0, b - rows);
    const dt = this.wall[b] - this.wall[a];
    return dt > 0 ? ((this.step[b] - this.step[a]) / dt) * 1000 : null;
  }

  /** First row whose step is ≥ `step` (n if none). */
  indexAtOrAfter(step: number): number {
    let lo = 0, hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.step[mid] < step) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Replica r's last values as a strided view copied into a new array. */
  replicaColumn(metric: string, r: number, smoothed: boolean): Float64Array {
    const cols = this.cols.get(metric)!;
    const out = new Float64Array(this.n), R = this.replicas;
    const src = smoothed ? cols.smoothRep : cols.last;
    for (let i = 0; i < this.n; i++) out[i] = src[i * R + r];
    return out;
  }

  /** Whether a metric's smoothed columns are smoothed (false: they repeat the raw values). */
  smooths(metric: string): boolean {
    return !this.layout.unsmoothed?.has(metric);
  }

  private resetSmoothers(): void {
    for (const name of this.metrics) {
      const beta = this.smooths(name) ? this.beta : 0;
      this.emaMean.set(name, Array.from({ length: this.groupCount }, () => new DebiasedEma(beta)));
      this.emaRep.set(
        name,
        Array.from({ length: this.replicas }, () => new DebiasedEma(beta)),
      );
    }
  }

  private smoothRow(name: string, cols: MetricColumns, i: number): void {
    const R = this.replicas, G = this.groupCount;
    const means = this.emaMean.get(name)!;
    for (let g = 0; g < G; g++) cols.smooth[i * G + g] = means[g].push(cols.mean[i * G + g]);
    const reps = this.emaRep.get(name)!;
    for (let r = 0; r < R; r++) cols.smoothRep[i * R + r] = reps[r].push(cols.last[i * R + r]);
  }

  private makeRoom(): void {
    if (this.cap < this.maxRows) {
      this.cap = Math.min(this.cap * 2, this.maxRows);
      const grow = (a: Float64Array) => {
        const b = new Float64Array(this.cap);
        b.set(a.subarray(0, this.n));
        return b;
      };
      this.stepFrom = grow(this.stepFrom);
      this.stepTo = grow(this.stepTo);
      this.step = grow(this.step);
      this.wall = grow(this.wall);
      for (const cols of this.cols.values()) cols.grow(this.cap, this.n);
      return;
    }
    this.mergePairs();
  }

  /** Halves the rows: rows 2k and 2k+1 become one bucket; the first row (step 0) stays. */
  private mergePairs(): void {
    const R = this.replicas, G = this.groupCount;
    let w = 1;
    for (let a = 1; a < this.n; a += 2, w++) {
      const b = Math.min(a + 1, this.n - 1);
      this.stepFrom[w] = this.stepFrom[a];
      this.stepTo[w] = this.stepTo[b];
      this.step[w] = this.step[b];
      this.wall[w] = this.wall[b];
      for (const cols of this.cols.values()) {
        for (let r = 0; r < R; r++) {
          const ma = cols.min[a * R + r], mb = cols.min[b * R + r];
          const xa = cols.max[a * R + r], xb = cols.max[b * R + r];
          cols.min[w * R + r] = Number.isNaN(ma) ? mb : Number.isNaN(mb) ? ma : Math.min(ma, mb);
          cols.max[w * R + r] = Number.isNaN(xa) ? xb : Number.isNaN(xb) ? xa : Math.max(xa, xb);
          cols.last[w * R + r] = cols.last[b * R + r];
          cols.smoothRep[w * R + r] = cols.smoothRep[b * R + r];
        }
        for (let g = 0; g < G; g++) cols.smooth[w * G + g] = cols.smooth[b * G + g];
        summarise(cols, w);
      }
    }
    this.n = w;
  }
}
