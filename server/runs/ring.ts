/**
 * The recent records of a run, in memory, bounded by bytes: subscribers that are caught up or
 * only a little behind (a reconnect, a slow socket) are served from here without touching the
 * disk. Older records are read back from the run log. Records are kept as logged (a block of
 * snapshots stays one block, so keeping it costs nothing per snapshot) and handed out one
 * snapshot at a time, as the log's readers hand them out.
 */
import { blockRow, type BodyRecord, lastSeqOf, type LogRecord, snapshotCount } from "./records.ts";

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

export class RecordRing {
  #records: LogRecord[] = [];
  #head = 0; // index of the oldest kept record in #records
  #bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Appends records, which must continue the seq sequence, and forgets the oldest. */
  push(records: LogRecord[]): void {
    for (const r of records) {
      this.#records.push(r);
      this.#bytes += recordBytes(r);
    }
    // Always keep at least the newest record, whatever its size.
    while (this.#bytes > this.maxBytes && this.#records.length - this.#head > 1) {
      this.#bytes -= recordBytes(this.#records[this.#head++]);
    }
    // Compact now and then so the array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > this.#records.length) {
      this.#records = this.#records.slice(this.#head);
      this.#head = 0;
    }
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
