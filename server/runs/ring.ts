/**
 * The recent records of a run, in memory, bounded by bytes: subscribers that are caught up or
 * only a little behind (a reconnect, a slow socket) are served from here without touching the
 * disk. Older records are read back from the run log.
 */
import type { BodyRecord } from "./records.ts";

/** Rough in-memory size of a record: its typed arrays plus a fixed overhead. */
export function recordBytes(r: BodyRecord): number {
  let n = 96;
  if (r.type === "snapshot") { for (const a of Object.values(r.metrics)) n += a.byteLength + 32; }
  else if (r.type === "frame") n += r.values.byteLength;
  return n;
}

export class RecordRing {
  #records: BodyRecord[] = [];
  #head = 0; // index of the oldest kept record in #records
  #bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Appends records, which must continue the seq sequence, and forgets the oldest. */
  push(records: BodyRecord[]): void {
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
    return this.size ? this.#records[this.#records.length - 1].seq : 0;
  }

  /**
   * Up to `max` records with seq > `after`, or undefined if the ring is empty or some of them
   * are no longer held (the caller then reads the log).
   */
  after(after: number, max = Infinity): BodyRecord[] | undefined {
    if (this.size === 0) return undefined;
    if (after >= this.lastSeq) return [];
    const first = this.firstSeq;
    if (after + 1 < first) return undefined;
    const start = this.#head + (after + 1 - first);
    return this.#records.slice(start, Math.min(this.#records.length, start + max));
  }
}
