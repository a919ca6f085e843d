/**
 * The recent records of a run, in memory, bounded by bytes: subscribers that are caught up or
 * only a little behind (a reconnect, a slow socket) are served from here without touching the
 * disk. Older records are read back from the run log. Records are kept as logged (a block of
 * snapshots stays one block, so keeping it costs nothing per snapshot) and handed out one
 * snapshot at a time, as the log's readers hand them out.
 */
import {
  blockRow,
  type BodyRecord,
  lastSeqOf,
  type LogRecord,
  snapshotCount,
  type SnapshotsRecord,
} from "./records.ts";

/** Rough in-memory size of a record: its typed arrays plus a fixed overhead. */
export function recordBytes(r: LogRecord): number {
  let n = 96;
  if (r.type === "snapshot") { for (const a of Object.values(r.metrics)) n += a.byteLength + 32; }
  else if (r.type === "snapshots") {
    n += r.steps.byteLength + r.wall_ms.byteLength;
    for (const a of Object.values(r.metrics)) n += a.byteLength + 32 * r.steps.length;
  } else if (r.type === "frame") n += r.values.byteLength;
  return n;
}

/** Buffers of forgotten blocks kept for the next copies (at most this many). */
const MAX_SPARE = 8;

export class RecordRing {
  #records: LogRecord[] = [];
  #spare: ArrayBuffer[] = [];
  #head = 0; // index of the oldest kept record in #records
  #bytes = 0;

  constructor(readonly maxBytes: number) {}

  /**
   * Appends records, which must continue the seq sequence, and forgets the oldest. A block is
   * kept as a copy of its rows: its arrays are views of a kernel call's buffer, which the
   * driver hands back to the kernel once the records are written (recycleColumns).
   */
  push(records: LogRecord[]): void {
    for (const r of records) {
      this.#records.push(r.type === "snapshots" ? this.#copy(r) : r);
      this.#bytes += recordBytes(r);
    }
    // Always keep at least the newest record, whatever its size.
    while (this.#bytes > this.maxBytes && this.#records.length - this.#head > 1) {
      const old = this.#records[this.#head++];
      this.#bytes -= recordBytes(old);
      // Nobody holds the arrays of a block it forgets (after() hands out copies): reuse them.
      if (old.type === "snapshots" && this.#spare.length < MAX_SPARE) {
        this.#spare.push(old.steps.buffer as ArrayBuffer);
      }
    }
    // Compact now and then so the array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > this.#records.length) {
      this.#records = this.#records.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * A block's rows in one buffer of the ring's own, reusing a forgotten block's when one is
   * big enough: at every=1 blocks come at tens of MB a second, and fresh memory for each costs
   * a page fault per 4 KiB, more than the copy.
   */
  #copy(b: SnapshotsRecord): SnapshotsRecord {
    const n = b.steps.length;
    const names = Object.keys(b.metrics);
    const bytes = 16 * n + names.reduce((sum, m) => sum + b.metrics[m].byteLength, 0);
    const at = this.#spare.findIndex((x) => x.byteLength >= bytes && x.byteLength <= 4 * bytes);
    const buffer = at >= 0 ? this.#spare.splice(at, 1)[0] : new ArrayBuffer(bytes);
    const steps = new Float64Array(buffer, 0, n);
    const wall = new Float64Array(buffer, 8 * n, n);
    steps.set(b.steps);
    wall.set(b.wall_ms);
    const metrics: Record<string, Float32Array> = {};
    let off = 16 * n;
    for (const m of names) {
      const v = new Float32Array(buffer, off, b.metrics[m].length);
      v.set(b.metrics[m]);
      metrics[m] = v;
      off += v.byteLength;
    }
    return { ...b, steps, wall_ms: wall, metrics };
  }

  get size(): number {
    return this.#records.length - this.#head;
  }

  /** Seq of the oldest record held (Infinity when empty). */
  get firstSeq(): number {
    return this.size ? this.#records[this.#head].seq : Infinity;
  }

  get lastSeq(): number {
    return this.size ? lastSeqOf(this.#records[this.#records.length - 1]) : 0;
  }

  /**
   * Up to `max` records with seq > `after` (blocks as the snapshots they hold), or undefined
   * if the ring is empty or some of them are no longer held (the caller then reads the log).
   */
  after(after: number, max = Infinity): BodyRecord[] | undefined {
    if (this.size === 0) return undefined;
    if (after >= this.lastSeq) return [];
    if (after + 1 < this.firstSeq) return undefined;
    // The first record that holds seq after + 1 (records are in seq order).
    let lo = this.#head, hi = this.#records.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (lastSeqOf(this.#records[mid]) <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: BodyRecord[] = [];
    for (let i = lo; i < this.#records.length && out.length < max; i++) {
      const r = this.#records[i];
      if (r.type !== "snapshots") {
        out.push(r);
        continue;
      }
      const n = snapshotCount(r);
      for (let k = Math.max(0, after + 1 - r.seq); k < n && out.length < max; k++) {
        out.push(blockRow(r, k));
      }
    }
    return out;
  }
}
