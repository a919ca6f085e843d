/**
 * Resuming a run from its log and checkpoint (docs/checkpoints.md): the log says which
 * records exist, the checkpoint (if any, and if the log reaches it) says where the session
 * stood. The session is reopened from the checkpoint's state, or at step 0 when there is
 * none; records the log already holds past that point are regenerated and dropped
 * (RunRecorder.resumeAfter), so seq numbers go on from the log's last record.
 */
import type { BodyRecord, HeaderRecord } from "./records.ts";
import type { Unsequenced } from "./recorder.ts";
import type { RunRecorder } from "./recorder.ts";
import type { RunStore, StoredRun } from "./store.ts";
import { checkpointPathFor, readCheckpoint, type RunCheckpoint } from "./checkpoints.ts";

export interface ResumePlan {
  header: HeaderRecord;
  /** Null: start again from step 0 (killed before the first checkpoint). */
  checkpoint: RunCheckpoint | null;
  /** Seq of the log's last record. */
  lastSeq: number;
  /** Step of the log's latest snapshot. */
  lastStep: number;
  /** The log's records after the checkpoint, which the resumed run regenerates. */
  stored: BodyRecord[];
}

/**
 * Reads what a resume needs, through the store's reader (one pass, which also rebuilds the
 * run's derived state for the writer that follows). A torn final record (a crash mid-write) is
 * cut off the log; damaged records are skipped as everywhere else. A checkpoint ahead of the
 * log (the log lost its tail, e.g. a power cut before the disk had it) or of another run is
 * ignored.
 */
export async function planResume(
  store: RunStore,
  run: StoredRun,
  warn: (message: string) => void,
): Promise<ResumePlan> {
  let checkpoint = await readCheckpoint(checkpointPathFor(run.path), warn);
  if (checkpoint && checkpoint.run !== run.header.id) {
    warn(`ignoring checkpoint at step ${checkpoint.step}: it belongs to another run`);
    checkpoint = null;
  }
  let from = checkpoint?.seq ?? 0;
  let lastSeq = 0;
  let lastStep = 0;
  let stored: BodyRecord[] = [];
  await store.reopenForResume(run, (r) => {
    lastSeq = r.seq;
    if (r.type === "snapshot") lastStep = r.step;
    if (r.seq > from) stored.push(r);
  });
  if (checkpoint && checkpoint.seq > lastSeq) {
    warn(`ignoring checkpoint at step ${checkpoint.step}: the log does not reach it`);
    checkpoint = null;
    from = 0;
    stored = [];
    for await (const { record } of store.iterate(run)) stored.push(record);
  }
  return { header: run.header, checkpoint, lastSeq, lastStep, stored };
}

/**
 * The `resumed` event of a run continued from `checkpoint` (null: recomputed from step 0);
 * `how` says who continued it (a restart, by hand, another worker).
 */
export function resumedEvent(
  checkpoint: { step: number } | null,
  how: string,
): Unsequenced<BodyRecord> {
  const step = checkpoint?.step ?? 0;
  const detail = checkpoint
    ? `${how}: continued from the checkpoint at step ${step}`
    : `${how}: no checkpoint, recomputed from step 0`;
  return { type: "event", time: Date.now(), event: { type: "resumed", step, detail } };
}

/** The `resumed` event and `queued` status a resumed run's stream carries first. */
export function resumeMarkers(plan: ResumePlan, how: string): Unsequenced<BodyRecord>[] {
  const resumed = resumedEvent(plan.checkpoint, how);
  return [resumed, { type: "status", time: resumed.time, status: "queued", step: plan.lastStep }];
}

/** Starts the resumed sequence: markers now, then regenerated records dropped. */
export function startResumed(recorder: RunRecorder, plan: ResumePlan, how: string): void {
  recorder.resumeAfter(plan.lastSeq, plan.lastStep, plan.stored, resumeMarkers(plan, how));
}
