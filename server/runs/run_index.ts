/**
 * Derived files of a run log (docs/storage.md), rebuildable from the log at any time:
 *
 *  - `<id>.snaps`: per snapshot, Float64 (step, seq, byte offset of its frame): finds where a
 *    step or seq range starts in the log by binary search, without reading the log.
 *  - `<id>.L1` … `<id>.L4`: a min/max/last pyramid. A level-L block summarises 16^L
 *    consecutive snapshots: Float64 (first step, last step, wall_ms of the last, count), then
 *    per metric in header order Float32 min[R], max[R], last[R]. History over any range reads
 *    at most a few thousand blocks, whatever the run's length.
 *
 * The builder is fed by the log writer after each append (a live run) or by a scan of the log
 * (a rebuild), so both paths write the same bytes.
 */
import { join } from "node:path";
import type { HeaderRecord, SnapshotRecord, SnapshotsRecord } from "./records.ts";
import type { Placed } from "./runlog.ts";
import { BucketAccumulator, type Decimated, snapshotPiece } from "./history.ts";

export const FANOUT = 16;
export const LEVELS = 4;
const SNAP_ENTRY = 24;
const BLOCK_HEAD = 32;

/** Bytes of one pyramid block, padded to 8 so every block's Float64 head is aligned. */
export function blockBytes(metrics: number, replicas: number): number {
  return BLOCK_HEAD + Math.ceil((12 * metrics * replicas) / 8) * 8;
}

/** The derived files of run `id` in `dir`. */
export function indexPaths(dir: string, id: string): { snaps: string; levels: string[] } {
  return {
    snaps: join(dir, `${id}.snaps`),
    levels: Array.from({ length: LEVELS }, (_, i) => join(dir, `${id}.L${i + 1}`)),
  };
}

/** Min/max/last of consecutive snapshots, built up one piece at a time. */
class BlockAccumulator {
  min: Float32Array;
  max: Float32Array;
  last: Float32Array;
  stepFrom = 0;
  stepTo = 0;
  wall = NaN;
  count = 0;

  constructor(readonly M: number, readonly R: number) {
    this.min = new Float32Array(M * R);
    this.max = new Float32Array(M * R);
    this.last = new Float32Array(M * R);
    this.reset();
  }

  reset(): void {
    this.min.fill(NaN);
    this.max.fill(NaN);
    this.last.fill(NaN);
    this.count = 0;
  }

  /** Adds one metric's stats (per replica) for metric index m. */
  addMetric(m: number, min: ArrayLike<number>, max: ArrayLike<number>, last: ArrayLike<number>) {
    const R = this.R;
    const o = m * R;
    const n = Math.min(R, last.length);
    for (let r = 0; r < n; r++) {
      const a = min[r], b = max[r];
      const lo = this.min[o + r], hi = this.max[o + r];
      if (!Number.isNaN(a) && (Number.isNaN(lo) || a < lo)) this.min[o + r] = a;
      if (!Number.isNaN(b) && (Number.isNaN(hi) || b > hi)) this.max[o + r] = b;
      this.last[o + r] = last[r];
    }
    for (let r = n; r < R; r++) this.last[o + r] = NaN;
  }

  /** Adds snapshots [i, j) of metric m from a block's column ([snapshot × replica]). */
  addRows(m: number, column: Float32Array, i: number, j: number) {
    const R = this.R;
    const o = m * R;
    for (let r = 0; r < R; r++) {
      let lo = this.min[o + r], hi = this.max[o + r];
      for (let k = i * R + r; k < j * R; k += R) {
        const a = column[k];
        if (a !== a) continue; // NaN: min/max ignore it
        if (lo !== lo || a < lo) lo = a;
        if (hi !== hi || a > hi) hi = a;
      }
      this.min[o + r] = lo;
      this.max[o + r] = hi;
      this.last[o + r] = column[(j - 1) * R + r];
    }
  }

  /** Notes the step range and count of the piece just added. */
  span(stepFrom: number, stepTo: number, wall: number, count: number): void {
    if (this.count === 0) this.stepFrom = stepFrom;
    this.stepTo = stepTo;
    this.wall = wall;
    this.count += count;
  }

  encode(out: Uint8Array, at: number): void {
    const head = new Float64Array(out.buffer, out.byteOffset + at, 4);
    head[0] = this.stepFrom;
    head[1] = this.stepTo;
    head[2] = this.wall;
    head[3] = this.count;
    const M = this.M, R = this.R;
    const body = new Float32Array(out.buffer, out.byteOffset + at + BLOCK_HEAD, 3 * M * R);
    // Plain loops: a block closes every 16 snapshots, and views per metric cost more here.
    for (let m = 0; m < M; m++) {
      for (let r = 0; r < R; r++) {
        body[3 * m * R + r] = this.min[m * R + r];
        body[3 * m * R + R + r] = this.max[m * R + r];
        body[3 * m * R + 2 * R + r] = this.last[m * R + r];
      }
    }
  }

  /** Adds a closed finer block (its min/max/last of every metric and replica, and its span). */
  addBlock(a: BlockAccumulator): void {
    const n = this.M * this.R;
    for (let k = 0; k < n; k++) {
      const lo = a.min[k], hi = a.max[k];
      if (lo === lo && (this.min[k] !== this.min[k] || lo < this.min[k])) this.min[k] = lo;
      if (hi === hi && (this.max[k] !== this.max[k] || hi > this.max[k])) this.max[k] = hi;
      this.last[k] = a.last[k];
    }
    this.span(a.stepFrom, a.stepTo, a.wall, a.count);
  }
}

/**
 * Writes the derived files as records are appended. A write error (a full disk) drops the
 * derived files: they are rebuilt from the log on the next start, and readers fall back to
 * scanning the log meanwhile.
 */
export class RunIndexBuilder {
  #paths: { snaps: string; levels: string[] };
  #acc: BlockAccumulator[];
  /** `.snaps` entries not yet written: #snapCount triples of (step, seq, offset). */
  #pendingSnaps = new Float64Array(3 * 1024);
  #snapCount = 0;
  #pendingBlocks: Uint8Array[][];
  #metrics: string[];
  #R: number;
  snapshots = 0;
  broken = false;

  constructor(readonly dir: string, readonly header: HeaderRecord) {
    this.#paths = indexPaths(dir, header.id);
    this.#metrics = header.metrics;
    this.#R = header.spec.replicas;
    this.#acc = Array.from(
      { length: LEVELS },
      () => new BlockAccumulator(this.#metrics.length, this.#R),
    );
    this.#pendingBlocks = Array.from({ length: LEVELS }, () => []);
  }

  /** Starts afresh: removes any derived files of this run. */
  static reset(dir: string, header: HeaderRecord): RunIndexBuilder {
    removeIndex(dir, header.id);
    return new RunIndexBuilder(dir, header);
  }

  add(placed: Placed[]): void {
    if (this.broken) return;
    for (const p of placed) {
      if (p.record.type === "snapshot") this.#addSnapshot(p.record, p.offset);
      else if (p.record.type === "snapshots") this.#addBlock(p.record, p.offset);
    }
    this.flush();
  }

  #addSnapshot(s: SnapshotRecord, offset: number): void {
    this.#pushEntry(s.step, s.seq, offset);
    this.snapshots++;
    const a1 = this.#acc[0];
    this.#metrics.forEach((m, i) => {
      const v = s.metrics[m] ?? new Float32Array(0);
      a1.addMetric(i, v, v, v);
    });
    a1.span(s.step, s.step, s.wall_ms, 1);
    this.#rollUp();
  }

  /**
   * A block's snapshots, each as #addSnapshot would add it (the same bytes), from its columns:
   * every entry of `.snaps` points at the block's frame.
   */
  #addBlock(b: SnapshotsRecord, offset: number): void {
    const n = b.steps.length, R = this.#R;
    const a1 = this.#acc[0];
    const columns = this.#metrics.map((m) => {
      const v = b.metrics[m];
      return v && v.length === n * R ? v : undefined;
    });
    const none = new Float32Array(0);
    for (let i = 0; i < n; i++) this.#pushEntry(b.steps[i], b.seq + i, offset);
    this.snapshots += n;
    // In runs of rows that fill the open level-1 block, not row by row.
    for (let i = 0; i < n;) {
      const j = Math.min(n, i + FANOUT - a1.count);
      for (let m = 0; m < columns.length; m++) {
        const c = columns[m];
        if (c) a1.addRows(m, c, i, j);
        else a1.addMetric(m, none, none, none);
      }
      a1.span(b.steps[i], b.steps[j - 1], b.wall_ms[j - 1], j - i);
      this.#rollUp();
      i = j;
    }
  }

  #pushEntry(step: number, seq: number, offset: number): void {
    if (3 * this.#snapCount + 3 > this.#pendingSnaps.length) {
      const more = new Float64Array(this.#pendingSnaps.length * 2);
      more.set(this.#pendingSnaps);
      this.#pendingSnaps = more;
    }
    const k = 3 * this.#snapCount++;
    this.#pendingSnaps[k] = step;
    this.#pendingSnaps[k + 1] = seq;
    this.#pendingSnaps[k + 2] = offset;
  }

  /** Closes the blocks that are full, level by level. */
  #rollUp(): void {
    for (let L = 0; L < LEVELS; L++) {
      const a = this.#acc[L];
      if (a.count < FANOUT ** (L + 1)) break;
      const bytes = new Uint8Array(blockBytes(this.#metrics.length, this.#R));
      a.encode(bytes, 0);
      this.#pendingBlocks[L].push(bytes);
      this.#acc[L + 1]?.addBlock(a);
      a.reset();
    }
  }

  /** Appends what is pending to the files (each opened and closed: no descriptor is held). */
  flush(): void {
    if (this.broken) return;
    try {
      if (this.#snapCount) {
        const bytes = new Uint8Array(this.#pendingSnaps.buffer, 0, 24 * this.#snapCount);
        Deno.writeFileSync(this.#paths.snaps, bytes, { append: true });
        this.#snapCount = 0;
      }
      for (let L = 0; L < LEVELS; L++) {
        const blocks = this.#pendingBlocks[L];
        if (!blocks.length) continue;
        const all = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
        let o = 0;
        for (const b of blocks) all.set(b, o), o += b.length;
        Deno.writeFileSync(this.#paths.levels[L], all, { append: true });
        this.#pendingBlocks[L] = [];
      }
    } catch {
      this.broken = true;
      removeIndex(this.dir, this.header.id);
    }
  }
}

export function removeIndex(dir: string, id: string): void {
  const p = indexPaths(dir, id);
  for (const f of [p.snaps, ...p.levels]) {
    try {
      Deno.removeSync(f);
    } catch { /* absent */ }
  }
}

/** Size in bytes the snapshot index must have for `snapshots` snapshots. */
export function snapsBytes(snapshots: number): number {
  return snapshots * SNAP_ENTRY;
}

async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = await file.read(out.subarray(got));
    if (n === null) throw new Error("the run index is shorter than expected");
    got += n;
  }
  return out;
}

export interface HistoryQuery {
  fromStep?: number;
  toStep?: number;
  buckets?: number;
  metrics: string[];
  replicas: number;
}

/**
 * Reads `count` snapshots from the log, from the one with seq `fromSeq` whose frame starts at
 * `fromOffset` (a block's frame holds the snapshots before it too: they are skipped).
 */
export type RawSnapshots = (
  fromOffset: number,
  fromSeq: number,
  count: number,
) => AsyncIterable<SnapshotRecord>;

/**
 * Answers questions from a run's derived files: where a seq or step starts, and history over a
 * step range from the pyramid. `snapshots` is how many snapshots the index holds now.
 */
export class RunIndexReader {
  constructor(
    readonly dir: string,
    readonly header: HeaderRecord,
    readonly snapshots: number,
  ) {}

  async #withSnaps<T>(fn: (f: Deno.FsFile) => Promise<T>): Promise<T> {
    const f = await Deno.open(indexPaths(this.dir, this.header.id).snaps, { read: true });
    try {
      return await fn(f);
    } finally {
      f.close();
    }
  }

  async #entry(f: Deno.FsFile, i: number): Promise<Float64Array> {
    const b = await readAt(f, i * SNAP_ENTRY, SNAP_ENTRY);
    return new Float64Array(b.buffer);
  }

  /** First index i in [0, n) with key(entry i) >= x, by field 0 (step) or 1 (seq). */
  async #lowerBound(f: Deno.FsFile, field: 0 | 1, x: number): Promise<number> {
    let lo = 0, hi = this.snapshots;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((await this.#entry(f, mid))[field] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Byte offset of a snapshot frame at or before the first record with seq > `after`, to start
   * reading from (undefined: start at the first body record).
   */
  offsetBefore(after: number): Promise<number | undefined> {
    if (this.snapshots === 0) return Promise.resolve(undefined);
    return this.#withSnaps(async (f) => {
      const i = await this.#lowerBound(f, 1, after + 1); // first snapshot with seq > after
      if (i === 0) return undefined;
      return (await this.#entry(f, i - 1))[2];
    });
  }

  /** The offset of the last snapshot (the run's latest values). */
  lastSnapshotOffset(): Promise<number | undefined> {
    if (this.snapshots === 0) return Promise.resolve(undefined);
    return this.#withSnaps(async (f) => (await this.#entry(f, this.snapshots - 1))[2]);
  }

  /**
   * History over [fromStep, toStep]: exact per-snapshot buckets when the range holds few
   * snapshots, else min/max/last of whole pyramid blocks (each block goes to the bucket of its
   * first step; the reply's steps_from/steps_to say exactly what each bucket covers).
   */
  history(q: HistoryQuery, raw: RawSnapshots): Promise<Decimated> {
    return this.#withSnaps(async (f) => {
      const n = this.snapshots;
      const first = n ? (await this.#entry(f, 0))[0] : 0;
      const lastStep = n ? (await this.#entry(f, n - 1))[0] : 0;
      const from = q.fromStep ?? first;
      const to = q.toStep ?? lastStep;
      const i0 = await this.#lowerBound(f, 0, from);
      const i1 = await this.#lowerBound(f, 0, to + 1); // exclusive
      const count = Math.max(0, i1 - i0);
      const nb = q.buckets === undefined ? count : Math.max(1, Math.min(q.buckets, count));
      const acc = new BucketAccumulator(
        from,
        to,
        Math.max(1, nb),
        nb >= count,
        q.metrics,
        q.replicas,
      );
      if (count === 0) return acc.result();
      const start = await this.#entry(f, i0);
      let L = 0;
      // The coarsest level with at least one block per bucket; below 16 snapshots per bucket
      // the snapshots themselves are read (exact buckets).
      while (L < LEVELS && count / FANOUT ** (L + 1) >= nb && nb < count) L++;
      if (L === 0) {
        for await (const s of raw(start[2], start[1], count)) acc.add(snapshotPiece(s));
        return acc.result();
      }
      await this.#pieces(f, i0, i1, L, raw, acc);
      return acc.result();
    });
  }

  /** Adds snapshots [i0, i1) to acc in order: finer pieces at the edges, level-L blocks between. */
  async #pieces(
    f: Deno.FsFile,
    i0: number,
    i1: number,
    L: number,
    raw: RawSnapshots,
    acc: BucketAccumulator,
  ): Promise<void> {
    if (i0 >= i1) return;
    if (L === 0) {
      const start = await this.#entry(f, i0);
      for await (const s of raw(start[2], start[1], i1 - i0)) acc.add(snapshotPiece(s));
      return;
    }
    const size = FANOUT ** L;
    const b0 = Math.ceil(i0 / size), b1 = Math.floor(i1 / size);
    if (b0 >= b1) return this.#pieces(f, i0, i1, L - 1, raw, acc);
    await this.#pieces(f, i0, b0 * size, L - 1, raw, acc);
    await this.#blocks(L, b0, b1, acc);
    await this.#pieces(f, b1 * size, i1, L - 1, raw, acc);
  }

  async #blocks(L: number, b0: number, b1: number, acc: BucketAccumulator): Promise<void> {
    const M = this.header.metrics.length, R = this.header.spec.replicas;
    const bb = blockBytes(M, R);
    const file = await Deno.open(indexPaths(this.dir, this.header.id).levels[L - 1], {
      read: true,
    });
    try {
      const per = Math.max(1, Math.floor((4 << 20) / bb)); // read about 4 MiB at a time
      const metricIndex = new Map(this.header.metrics.map((m, i) => [m, i]));
      for (let b = b0; b < b1; b += per) {
        const n = Math.min(per, b1 - b);
        const bytes = await readAt(file, b * bb, n * bb);
        for (let k = 0; k < n; k++) {
          const at = k * bb;
          const head = new Float64Array(bytes.buffer, at, 4);
          const body = new Float32Array(bytes.buffer, at + BLOCK_HEAD, 3 * M * R);
          acc.add({
            stepFrom: head[0],
            stepTo: head[1],
            wall: head[2],
            count: head[3],
            stats(m) {
              const o = 3 * (metricIndex.get(m) ?? 0) * R;
              return {
                min: body.subarray(o, o + R),
                max: body.subarray(o + R, o + 2 * R),
                last: body.subarray(o + 2 * R, o + 3 * R),
              };
            },
          });
        }
      }
    } finally {
      file.close();
    }
  }
}
