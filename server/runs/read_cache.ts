/**
 * Records recently read back from run logs, for subscribers catching up: a replay asks for the
 * next batch many times (once per drained socket), and reading the same stretch of a log again
 * each time would cost a decode per record per ask. One cache for all runs, bounded by bytes,
 * least recently used first out; it never holds a whole run unless the run is small.
 */
import type { BodyRecord } from "./records.ts";
import { recordBytes } from "./ring.ts";

interface Stretch {
  run: string;
  records: BodyRecord[];
  bytes: number;
}

export class ReadCache {
  #stretches = new Map<string, Stretch>();
  #bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Up to `max` cached records of `run` with seq > `after`, if a stretch holds the next one. */
  get(run: string, after: number, max: number): BodyRecord[] | undefined {
    for (const [key, s] of this.#stretches) {
      if (s.run !== run) continue;
      const first = s.records[0].seq, last = s.records[s.records.length - 1].seq;
      if (after < first - 1 || after >= last) continue;
      let i = 0;
      while (i < s.records.length && s.records[i].seq <= after) i++;
      this.#stretches.delete(key); // most recently used last
      this.#stretches.set(key, s);
      return s.records.slice(i, i + max);
    }
    return undefined;
  }

  /** Keeps a stretch of a run's records (several per run: subscribers at different places). */
  put(run: string, records: BodyRecord[]): void {
    if (records.length === 0) return;
    const bytes = records.reduce((n, r) => n + recordBytes(r), 0);
    if (bytes > this.maxBytes) return;
    const key = `${run}:${records[0].seq}`;
    this.#remove(key);
    this.#stretches.set(key, { run, records, bytes });
    this.#bytes += bytes;
    for (const k of this.#stretches.keys()) {
      if (this.#bytes <= this.maxBytes) break;
      this.#remove(k);
    }
  }

  /** Forgets a run (deleted). */
  drop(run: string): void {
    for (const [k, s] of this.#stretches) if (s.run === run) this.#remove(k);
  }

  #remove(key: string): void {
    const s = this.#stretches.get(key);
    if (!s) return;
    this.#stretches.delete(key);
    this.#bytes -= s.bytes;
  }
}
