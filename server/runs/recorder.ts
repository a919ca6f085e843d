/**
 * A run's single writer: assigns seq numbers, appends to the run log (if any), keeps the
 * latest state, and fans records out to listeners (stream, CLI). Everything a subscriber or
 * the log sees passes through here, so the log and the live stream are the same sequence.
 */
import type { BodyRecord, HeaderRecord, RunStatus } from "./records.ts";
import type { RunLogWriter } from "./runlog.ts";
import { redactPaths } from "../redact_paths.ts";

export type Unsequenced<T> = T extends unknown ? Omit<T, "seq"> : never;
export type RecordListener = (records: BodyRecord[]) => void;

export class RunRecorder {
  #seq = 0;
  #listeners = new Set<RecordListener>();
  status: RunStatus = "queued";
  step = 0;
  latest?: BodyRecord & { type: "snapshot" };

  constructor(readonly header: HeaderRecord, readonly log?: RunLogWriter) {}

  get lastSeq(): number {
    return this.#seq;
  }

  listen(fn: RecordListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  emit(records: Unsequenced<BodyRecord>[]): BodyRecord[] {
    if (records.length === 0) return [];
    const sequenced = records.map((r) => ({ ...r, seq: ++this.#seq }) as BodyRecord);
    for (const r of sequenced) {
      if (r.type === "snapshot") {
        this.latest = r;
        this.step = r.step;
      } else if (r.type === "status") this.status = r.status;
    }
    this.log?.appendSync(sequenced);
    for (const fn of this.#listeners) {
      try {
        fn(sequenced);
      } catch (e) {
        // A broken listener must not stop the run or the other listeners.
        console.error("run listener failed:", e);
      }
    }
    return sequenced;
  }

  setStatus(status: RunStatus, error?: string): void {
    this.emit([{
      type: "status",
      time: Date.now(),
      status,
      step: this.step,
      // The cause goes to every subscriber and reply: never where the lab lives on disk.
      ...(error ? { error: redactPaths(error) } : {}),
    }]);
  }
}
