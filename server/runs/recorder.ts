/**
 * A run's single writer: assigns seq numbers, appends to the run log (if any), keeps the
 * latest state, and fans records out to listeners (stream, CLI). Everything a subscriber or
 * the log sees passes through here, so the log and the live stream are the same sequence.
 */
import {
  blockRow,
  type BodyRecord,
  type HeaderRecord,
  lastSeqOf,
  type LogRecord,
  type RunStatus,
  sliceBlock,
  type SnapshotsRecord,
} from "./records.ts";
import { redactPaths } from "../redact_paths.ts";
import { TERMINAL } from "./store.ts";
import { RunLogWriteError, type RunLogWriter } from "./runlog.ts";

export type Unsequenced<T> = T extends unknown ? Omit<T, "seq"> : never;
/** Gets each batch as logged: snapshots may come in blocks (`snapshots` records). */
export type RecordListener = (records: LogRecord[]) => void;

export class RunRecorder {
  #seq = 0;
  #listeners = new Set<RecordListener>();
  /** Records the log already holds that a resumed run regenerates: dropped, in order. */
  #stored: BodyRecord[] = [];
  #covered = 0;
  /** Set when the log could not be written: the run has ended `failed` and takes no more. */
  #writeFailed?: RunLogWriteError;
  status: RunStatus = "queued";
  step = 0;
  latest?: BodyRecord & { type: "snapshot" };

  constructor(readonly header: HeaderRecord, readonly log?: RunLogWriter) {}

  get lastSeq(): number {
    return this.#seq;
  }

  /**
   * Seq of the last snapshot, event or frame produced, whether emitted or (while a resumed
   * run regenerates what its log holds) dropped: a checkpoint taken now covers the log up to
   * here. Statuses, resume markers and annotations are not regenerated, so they do not count.
   */
  get checkpointSeq(): number {
    return this.#covered;
  }

  /** Makes the log durable up to the last record emitted (before a checkpoint points at it). */
  async flush(): Promise<void> {
    await this.log?.sync();
  }

  get writeFailed(): RunLogWriteError | undefined {
    return this.#writeFailed;
  }

  listen(fn: RecordListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Continues a run whose log ends at `lastSeq`: emits `markers` (the resumed event and the
   * running status) as the next records, then drops, in order, regenerated snapshots, events
   * and frames that `stored` (the log's records after the checkpoint) already holds, so the
   * run's sequence stays gapless and free of duplicates.
   */
  resumeAfter(
    lastSeq: number,
    step: number,
    stored: BodyRecord[],
    markers: Unsequenced<BodyRecord>[],
  ): void {
    this.#seq = lastSeq;
    // The log before `stored` is what the session's starting point covers.
    this.#covered = stored.length ? stored[0].seq - 1 : lastSeq;
    this.step = step;
    this.#stored = [];
    this.emit(markers);
    this.#stored = stored.filter((r) => !notRegenerated(r));
  }

  /** Drops the regenerated records the log already has; checks that they are the same ones. */
  #dropStored(records: Unsequenced<LogRecord>[]): Unsequenced<LogRecord>[] {
    if (this.#stored.length === 0) return records;
    const out: Unsequenced<LogRecord>[] = [];
    for (const r of records) {
      if (notRegenerated(r) || this.#stored.length === 0) {
        out.push(r);
        continue;
      }
      if (r.type === "snapshots") {
        // The log holds snapshots one by one (a reader expands blocks): compare row by row,
        // keep the rows past what it holds as a block.
        const block = { ...r, seq: 0 } as SnapshotsRecord;
        let i = 0;
        for (; i < block.steps.length && this.#stored.length; i++) {
          const kept = this.#dropStored([blockRow(block, i)]);
          if (kept.length) break; // differs: keep this row and all after it
        }
        if (i < block.steps.length) {
          const { seq: _, ...rest } = sliceBlock(block, i);
          out.push(rest);
        }
        continue;
      }
      const stored = this.#stored.shift()!;
      this.#covered = stored.seq;
      if (!sameRecord(stored, r)) {
        // Cannot happen for a deterministic run; keep everything rather than lose records.
        console.error(
          `run ${this.header.id}: resumed run differs from its log at seq ${stored.seq}; ` +
            `records from here on may repeat earlier ones`,
        );
        this.#stored = [];
        out.push(r);
      }
    }
    return out;
  }

  /**
   * Drops regenerated records the log already holds (a resumed run), then logs records and
   * hands them to the listeners. If the log cannot take them (a full disk, an
   * I/O error) they are dropped, the run ends `failed` with the cause, and the error is
   * thrown: subscribers never see a record the log does not have, except that final status.
   */
  emit(records: Unsequenced<LogRecord>[]): LogRecord[] {
    // A terminal status is a run's last record: anything after it (a driver noticing a stop
    // after a shutdown marked the run interrupted) is dropped, from the log and the stream alike.
    if (this.#writeFailed || TERMINAL.has(this.status)) return [];
    records = this.#dropStored(records);
    if (records.length === 0) return [];
    const before = this.#seq;
    // A block takes one seq per snapshot it holds.
    const sequenced = records.map((r) => {
      const s = { ...r, seq: this.#seq + 1 } as LogRecord;
      this.#seq = lastSeqOf(s);
      return s;
    });
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

  #deliver(sequenced: LogRecord[]): void {
    for (const r of sequenced) {
      if (!notRegenerated(r)) this.#covered = lastSeqOf(r);
      if (r.type === "snapshot") {
        this.latest = r;
        this.step = r.step;
      } else if (r.type === "snapshots") {
        this.latest = blockRow(r, r.steps.length - 1);
        this.step = this.latest.step;
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

  setStatus(status: RunStatus, error?: string, resumeOnStart = false): void {
    this.emit([{
      type: "status",
      time: Date.now(),
      status,
      step: this.step,
      // The cause goes to every subscriber and reply: never where the lab lives on disk.
      ...(error ? { error: redactPaths(error) } : {}),
      ...(resumeOnStart ? { resume_on_start: true as const } : {}),
    }]);
  }
}

/**
 * Records a resumed session does not produce again: statuses, earlier resumes' markers and
 * annotations (written by hand, live or after the fact).
 */
function notRegenerated(r: Unsequenced<LogRecord>): boolean {
  return r.type === "status" || r.type === "annotation" ||
    (r.type === "event" && r.event.type === "resumed");
}

/** Same kind of record at the same step (what a regenerated record must be to replace one). */
function sameRecord(a: BodyRecord, b: Unsequenced<LogRecord>): boolean {
  if (a.type !== b.type) return false;
  if (a.type === "event" && b.type === "event") {
    return a.event.type === b.event.type && a.event.step === b.event.step;
  }
  if (a.type === "frame" && b.type === "frame") return a.step === b.step && a.name === b.name;
  if (a.type === "snapshot" && b.type === "snapshot") return a.step === b.step;
  return false;
}
