/**
 * A run's single writer: assigns seq numbers, appends to the run log (if any), keeps the
 * latest state, and fans records out to listeners (stream, CLI). Everything a subscriber or
 * the log sees passes through here, so the log and the live stream are the same sequence.
 */
import type { BodyRecord, HeaderRecord, RunStatus } from "./records.ts";
import { TERMINAL } from "./store.ts";
import { RunLogWriteError, type RunLogWriter } from "./runlog.ts";

export type Unsequenced<T> = T extends unknown ? Omit<T, "seq"> : never;
export type RecordListener = (records: BodyRecord[]) => void;

export class RunRecorder {
  #seq = 0;
  #listeners = new Set<RecordListener>();
  /** Set when the log could not be written: the run has ended `failed` and takes no more. */
  #writeFailed?: RunLogWriteError;
  status: RunStatus = "queued";
  step = 0;
  latest?: BodyRecord & { type: "snapshot" };

  constructor(readonly header: HeaderRecord, readonly log?: RunLogWriter) {}

  get lastSeq(): number {
    return this.#seq;
  }

  get writeFailed(): RunLogWriteError | undefined {
    return this.#writeFailed;
  }

  listen(fn: RecordListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Logs records, then hands them to the listeners. If the log cannot take them (a full disk,
   * an I/O error) they are dropped, the run ends `failed` with the cause, and the error is
   * thrown: subscribers never see a record the log does not have, except that final status.
   */
  emit(records: Unsequenced<BodyRecord>[]): BodyRecord[] {
    // A terminal status is a run's last record: anything after it (a driver noticing a stop
    // after a shutdown marked the run interrupted) is dropped, from the log and the stream alike.
    if (records.length === 0 || this.#writeFailed || TERMINAL.has(this.status)) return [];
    const before = this.#seq;
    const sequenced = records.map((r) => ({ ...r, seq: ++this.#seq }) as BodyRecord);
    try {
      this.log?.appendSync(sequenced);
    } catch (e) {
      if (!(e instanceof RunLogWriteError)) throw e;
      this.#seq = before;
      this.#writeFailed = e;
      const failed = {
        type: "status" as const,
        seq: ++this.#seq,
        time: Date.now(),
        status: "failed" as const,
        step: this.step,
        error: e.message,
      };
      try {
        this.log?.appendSync([failed]); // it may fit once the partial batch is cut off
      } catch { /* the log then ends before this status; a restart marks it interrupted */ }
      this.#deliver([failed]);
      throw e;
    }
    this.#deliver(sequenced);
    return sequenced;
  }

  #deliver(sequenced: BodyRecord[]): void {
    for (const r of sequenced) {
      if (r.type === "snapshot") {
        this.latest = r;
        this.step = r.step;
      } else if (r.type === "status") this.status = r.status;
    }
    for (const fn of this.#listeners) {
      try {
        fn(sequenced);
      } catch (e) {
        // A broken listener must not stop the run or the other listeners.
        console.error("run listener failed:", e);
      }
    }
  }

  setStatus(status: RunStatus, error?: string): void {
    this.emit([{
      type: "status",
      time: Date.now(),
      status,
      step: this.step,
      ...(error ? { error } : {}),
    }]);
  }
}
