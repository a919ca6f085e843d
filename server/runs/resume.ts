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
import { readRunLog } from "./runlog.ts";
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
 * Reads what a resume needs. A truncated final record (a crash mid-write) is cut off the
 * log first. A checkpoint ahead of the log (the log lost its tail, e.g. a power cut before
 * the disk had it) or of another run is ignored.
 */
export async function planResume(
  logPath: string,
  warn: (message: string) => void,
): Promise<ResumePlan> {
  const log = await readRunLog(logPath);
  if (log.truncated) await Deno.truncate(logPath, log.validBytes);
  const lastSeq = log.records.at(-1)?.seq ?? 0;
  let lastStep = 0;
  for (const r of log.records) if (r.type === "snapshot") lastStep = r.step;
  let checkpoint = await readCheckpoint(checkpointPathFor(logPath), warn);
  if (checkpoint && (checkpoint.run !== log.header.id || checkpoint.seq > lastSeq)) {
    warn(`ignoring checkpoint at step ${checkpoint.step}: the log does not reach it`);
    checkpoint = null;
  }
  const from = checkpoint?.seq ?? 0;
  return {
    header: log.header,
    checkpoint,
    lastSeq,
    lastStep,
    stored: log.records.filter((r) => r.seq > from),
  };
}

/** The `resumed` event and `queued` status a resumed run's stream carries first. */
export function resumeMarkers(plan: ResumePlan, how: string): Unsequenced<BodyRecord>[] {
  const step = plan.checkpoint?.step ?? 0;
  const time = Date.now();
  const detail = plan.checkpoint
    ? `${how}: continued from the checkpoint at step ${step}`
    : `${how}: no checkpoint, recomputed from step 0`;
  return [
    { type: "event", time, event: { type: "resumed", step, detail } },
    { type: "status", time, status: "queued", step: plan.lastStep },
  ];
}

/** Starts the resumed sequence: markers now, then regenerated records dropped. */
export function startResumed(recorder: RunRecorder, plan: ResumePlan, how: string): void {
  recorder.resumeAfter(plan.lastSeq, plan.lastStep, plan.stored, resumeMarkers(plan, how));
}
