/**
 * Snapshots column-wise (SnapshotColumns): what a session reports when its caller asks for
 * columns (AdvanceOptions), and what the run log stores as one `snapshots` record. At a
 * snapshot every step a run makes a million snapshots a second; an object and R-value
 * Float32Array per metric per snapshot costs more than the step itself, so the fast path
 * never makes them. These helpers convert between the two forms; both carry the same numbers.
 */
import type {
  AdvanceOptions,
  AdvanceResult,
  Snapshot,
  SnapshotColumns,
} from "../experiments/types.ts";
import { nextSnapshotStep } from "./snapshots.ts";

/** Snapshots (each metric's R values) as columns. */
export function columnsOf(
  snapshots: readonly Snapshot[],
  replicas: number,
  names: readonly string[] = snapshots.length ? Object.keys(snapshots[0].metrics) : [],
): SnapshotColumns {
  const n = snapshots.length;
  const steps = new Float64Array(n);
  const wallMs = new Float64Array(n);
  const metrics: Record<string, Float32Array> = {};
  for (const name of names) metrics[name] = new Float32Array(n * replicas);
  snapshots.forEach((s, i) => {
    steps[i] = s.step;
    wallMs[i] = s.wallMs;
    for (const name of names) {
      const v = s.metrics[name];
      if (v) metrics[name].set(v.subarray(0, replicas), i * replicas);
      else metrics[name].fill(NaN, i * replicas, (i + 1) * replicas);
    }
  });
  return { replicas, steps, wallMs, metrics };
}

/** The snapshots of a result as columns, whichever form the session reported them in. */
export function resultColumns(result: AdvanceResult, replicas: number): SnapshotColumns {
  return result.columns ?? columnsOf(result.snapshots, replicas);
}

/**
 * `result` in the form its caller asked for (AdvanceOptions): with `columns` asked and its
 * snapshots given as objects, they are moved into columns (for a session that makes objects
 * anyway, so that a Worker transfers one buffer instead of cloning them all).
 */
export function inAskedForm(
  result: AdvanceResult,
  options: AdvanceOptions | undefined,
  replicas: number,
): AdvanceResult {
  if (!options?.columns || result.columns) return result;
  result.columns = columnsOf(result.snapshots, replicas);
  result.snapshots = [];
  return result;
}

/** Row `i` as a Snapshot (its own copies of the values). */
export function rowSnapshot(c: SnapshotColumns, i: number): Snapshot {
  const R = c.replicas;
  const metrics: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(c.metrics)) {
    metrics[name] = v.slice(i * R, (i + 1) * R);
  }
  return { step: c.steps[i], wallMs: c.wallMs[i], metrics };
}

/** Every row as a Snapshot. */
export function snapshotsOf(c: SnapshotColumns): Snapshot[] {
  return Array.from({ length: c.steps.length }, (_, i) => rowSnapshot(c, i));
}

/** Rows [from, to) as columns viewing the same memory (no copy). */
export function sliceColumns(c: SnapshotColumns, from: number, to: number): SnapshotColumns {
  const R = c.replicas;
  const metrics: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(c.metrics)) {
    metrics[name] = v.subarray(from * R, to * R);
  }
  return {
    replicas: R,
    steps: c.steps.subarray(from, to),
    wallMs: c.wallMs.subarray(from, to),
    metrics,
  };
}

/** Number of rows. */
export function columnRows(c: SnapshotColumns): number {
  return c.steps.length;
}

/** Snapshot steps in (from, to]: multiples of `every`, and `total` itself (isSnapshotStep). */
export function snapshotStepsBetween(
  from: number,
  to: number,
  every: number,
  total: number,
): number {
  if (!(to > from)) return 0;
  const multiples = Math.floor(to / every) - Math.floor(from / every);
  return multiples + (to === total && total % every !== 0 ? 1 : 0);
}

/**
 * Buffers of columns a consumer is done with, handed back (recycleColumnBuffers): the threaded
 * session returns its workers' buffers once merged, so a worker writes its next rows into memory
 * it already has; a driver done with a result's columns (stored, nothing holding a view) may hand
 * theirs back likewise for the next merge (mergeColumns) or session call in its thread. Memory the process takes fresh costs more than the copy itself here (page
 * faults: 1-3 ns a byte measured on the 2-core box for buffers of megabytes).
 */
const spareBuffers: ArrayBuffer[] = [];
const MAX_SPARE_BUFFERS = 4;

/** Takes buffers whose arrays nobody reads any more for later ColumnBuilders of this thread. */
export function recycleColumnBuffers(buffers: Iterable<ArrayBuffer>): void {
  for (const b of buffers) {
    if (b.byteLength === 0) continue;
    spareBuffers.push(b);
    // Full: forget the smallest (the first calls of a run are small; later ones are not, and a
    // pool kept full of small buffers would never be used again).
    if (spareBuffers.length > MAX_SPARE_BUFFERS) {
      let smallest = 0;
      spareBuffers.forEach((x, i) => {
        if (x.byteLength < spareBuffers[smallest].byteLength) smallest = i;
      });
      spareBuffers.splice(smallest, 1);
    }
  }
}

/**
 * A buffer for new columns of `bytes`: a spare one (recycleColumnBuffers) of at least that size
 * and at most 4× it, or a new one. Its contents are whatever was there: write every value.
 */
export function columnsBuffer(bytes: number): ArrayBuffer {
  let best = -1;
  spareBuffers.forEach((b, i) => {
    const fits = b.byteLength >= bytes && b.byteLength <= 4 * bytes + 4096;
    if (fits && (best < 0 || b.byteLength < spareBuffers[best].byteLength)) best = i;
  });
  if (best < 0) return new ArrayBuffer(bytes);
  return spareBuffers.splice(best, 1)[0];
}

/** The distinct buffers holding columns' arrays. */
export function columnBuffers(c: SnapshotColumns): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>([
    c.steps.buffer as ArrayBuffer,
    c.wallMs.buffer as ArrayBuffer,
  ]);
  for (const a of Object.values(c.metrics)) buffers.add(a.buffer as ArrayBuffer);
  return [...buffers];
}

/**
 * Columns grown row by row within one advance(): rows copied straight out of a kernel's metric
 * buffer (appendMetricBuffer), or appended from snapshots or other columns. Its arrays are its
 * own (never views into wasm memory), so a Worker can transfer them; size it to the rows the
 * call will make and it never reallocates.
 */
export class ColumnBuilder {
  #rows = 0;
  #capacity: number;
  #steps: Float64Array;
  #wallMs: Float64Array;
  /** Per metric (in `names` order): float32 columns, and int32 views of the same memory. */
  #columns: Float32Array[];
  #bits: Int32Array[];

  constructor(readonly names: readonly string[], readonly replicas: number, capacity = 16) {
    this.#capacity = Math.max(1, capacity);
    [this.#steps, this.#wallMs, this.#columns] = this.#allocate(this.#capacity);
    this.#bits = this.#columns.map((c) => new Int32Array(c.buffer, c.byteOffset, c.length));
  }

  get rows(): number {
    return this.#rows;
  }

  /**
   * Arrays for `capacity` rows, all in one ArrayBuffer: one allocation per call (an ArrayBuffer
   * costs microseconds to make), and one buffer for a Worker to transfer.
   */
  #allocate(capacity: number): [Float64Array, Float64Array, Float32Array[]] {
    const R = this.replicas;
    const buffer = columnsBuffer(capacity * (16 + 4 * R * this.names.length));
    const steps = new Float64Array(buffer, 0, capacity);
    const wallMs = new Float64Array(buffer, 8 * capacity, capacity);
    const columns = this.names.map((_, q) =>
      new Float32Array(buffer, 16 * capacity + 4 * q * capacity * R, capacity * R)
    );
    return [steps, wallMs, columns];
  }

  /** Makes room for `extra` more rows (doubling, so appends stay amortised O(1)). */
  #reserve(extra: number): void {
    const need = this.#rows + extra;
    if (need <= this.#capacity) return;
    const capacity = Math.max(need, 2 * this.#capacity);
    const [steps, wallMs, columns] = this.#allocate(capacity);
    const n = this.#rows;
    steps.set(this.#steps.subarray(0, n));
    wallMs.set(this.#wallMs.subarray(0, n));
    columns.forEach((c, q) => c.set(this.#columns[q].subarray(0, n * this.replicas)));
    [this.#steps, this.#wallMs, this.#columns] = [steps, wallMs, columns];
    this.#bits = columns.map((c) => new Int32Array(c.buffer, c.byteOffset, c.length));
    this.#capacity = capacity;
  }

  /**
   * `count` rows from a kernel's metric buffer laid out [snapshot][metric][replica] (`buffer`:
   * int32 view of its float32 bits from the buffer's start, so NaN payloads are copied as
   * they are). Row 0's step is `firstStep`; each next row's the next snapshot step.
   */
  appendMetricBuffer(
    buffer: Int32Array,
    count: number,
    firstStep: number,
    every: number,
    total: number,
  ): void {
    if (count <= 0) return;
    this.#reserve(count);
    const R = this.replicas;
    const M = this.names.length;
    const row = this.#rows;
    for (let q = 0; q < M; q++) {
      copyStrided(this.#bits[q], row * R, buffer, q * R, M * R, count, R);
    }
    fillSnapshotSteps(this.#steps, row, count, firstStep, every, total);
    this.#rows += count;
  }

  /** One snapshot as a row (a metric it lacks reads NaN). */
  appendSnapshot(s: Snapshot): void {
    this.#reserve(1);
    const R = this.replicas;
    const row = this.#rows;
    this.#steps[row] = s.step;
    this.#wallMs[row] = s.wallMs;
    this.names.forEach((name, q) => {
      const v = s.metrics[name];
      if (v) this.#columns[q].set(v.subarray(0, R), row * R);
      else this.#columns[q].fill(NaN, row * R, (row + 1) * R);
    });
    this.#rows++;
  }

  /** Every row of `c` (same replicas), after the rows already here. */
  appendColumns(c: SnapshotColumns): void {
    const n = c.steps.length;
    if (n === 0) return;
    this.#reserve(n);
    const R = this.replicas;
    const row = this.#rows;
    this.#steps.set(c.steps, row);
    this.#wallMs.set(c.wallMs, row);
    this.names.forEach((name, q) => {
      const v = c.metrics[name];
      if (v) this.#columns[q].set(v.subarray(0, n * R), row * R);
      else this.#columns[q].fill(NaN, row * R, (row + n) * R);
    });
    this.#rows += n;
  }

  /** The rows so far (views of the builder's arrays: append nothing after this). */
  finish(): SnapshotColumns {
    const n = this.#rows;
    const R = this.replicas;
    const metrics: Record<string, Float32Array> = {};
    this.names.forEach((name, q) => {
      metrics[name] = n === this.#capacity ? this.#columns[q] : this.#columns[q].subarray(0, n * R);
    });
    return {
      replicas: R,
      steps: n === this.#capacity ? this.#steps : this.#steps.subarray(0, n),
      wallMs: n === this.#capacity ? this.#wallMs : this.#wallMs.subarray(0, n),
      metrics,
    };
  }
}

/**
 * steps[at + i] for i < count: `firstStep`, then each next snapshot step (nextSnapshotStep).
 * After a multiple of `every` the next is `every` further (or `total`), so no division per row.
 */
function fillSnapshotSteps(
  steps: Float64Array,
  at: number,
  count: number,
  firstStep: number,
  every: number,
  total: number,
): void {
  if (count <= 0) return;
  steps[at] = firstStep;
  if (count === 1) return;
  const base = firstStep % every === 0 ? firstStep : nextSnapshotStep(firstStep, every, total);
  if (base !== firstStep) steps[at + 1] = base;
  for (let i = base === firstStep ? 1 : 2, k = 1; i < count; i++, k++) {
    const s = base + k * every;
    steps[at + i] = s < total ? s : total;
  }
}

/**
 * `count` blocks of `width` values, block i from src[srcAt + i·stride] to dst[dstAt + i·width].
 * A function of its own, called once per metric per call: V8 optimises it whole (inlined into
 * a nest of loops it kept deoptimising and re-entering; 5–10× slower).
 */
function copyStrided(
  dst: Int32Array,
  dstAt: number,
  src: Int32Array,
  srcAt: number,
  stride: number,
  count: number,
  width: number,
): void {
  if (width >= 16) {
    for (let i = 0; i < count; i++) {
      dst.set(src.subarray(srcAt + i * stride, srcAt + i * stride + width), dstAt + i * width);
    }
    return;
  }
  let d = dstAt;
  for (let i = 0, s = srcAt; i < count; i++, s += stride) {
    for (let r = 0; r < width; r++) dst[d++] = src[s + r];
  }
}

/** Columns one after the other (same replicas and metrics), as one. */
export function concatColumns(
  parts: readonly SnapshotColumns[],
  replicas: number,
  names: readonly string[] = parts.length ? Object.keys(parts[0].metrics) : [],
): SnapshotColumns {
  if (parts.length === 1) return parts[0];
  const rows = parts.reduce((n, c) => n + c.steps.length, 0);
  const out = new ColumnBuilder(names, replicas, rows);
  for (const c of parts) out.appendColumns(c);
  return out.finish();
}
