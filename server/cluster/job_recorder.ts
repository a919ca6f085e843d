/**
 * The recorder of one job on a worker: a RunRecorder without a log whose seqs are the job's
 * deterministic sequence (docs/protocol.md, "Records on NATS subjects"): `running` at seq 1,
 * then snapshots, events and frames, then the final status. Every attempt at the job numbers
 * the same record with the same seq, so the stream's msgID de-duplication and a subscriber's
 * de-duplication by seq both see one sequence however often the job was handed on:
 * - a job continued from a checkpoint starts after the checkpoint's seq, and its `running`
 *   status (a repeat of seq 1) is not emitted;
 * - a job handed back at a graceful shutdown does not end: its `interrupted` status is not
 *   emitted (it would take the seq of the record the next attempt computes there).
 */
import type { HeaderRecord, RunStatus } from "../runs/records.ts";
import { RunRecorder } from "../runs/recorder.ts";

export class JobRecorder extends RunRecorder {
  #repeatRunning = false;

  /** `from`: the checkpoint the job continues from, if any. */
  constructor(header: HeaderRecord, from?: { seq: number; step: number }) {
    super(header);
    if (from) {
      // Seq 1 is always the first attempt's `running`, also when the checkpoint precedes any
      // snapshot (a shutdown before the first call: checkpoint seq 0).
      this.resumeAfter(Math.max(1, from.seq), from.step, [], []);
      this.#repeatRunning = true;
    }
  }

  override setStatus(status: RunStatus, error?: string): void {
    if (status === "interrupted") return;
    if (status === "running" && this.#repeatRunning) {
      this.#repeatRunning = false;
      this.status = "running";
      return;
    }
    super.setStatus(status, error);
  }
}
