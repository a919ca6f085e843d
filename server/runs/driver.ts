/**
 * Drives a KernelSession from step 0 to the end of a run, in calls sized to about `chunkMs`
 * of compute so that snapshots leave promptly, and turns the results into ordered records:
 * planned events (learning-rate changes) interleaved with snapshots by step, divergence
 * events, frames, and the final status. Used by both the CLI and the server.
 */
import type {
  AdvanceResult,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
  SnapshotColumns,
} from "../experiments/types.ts";
import { getExperiment } from "../experiments/registry.ts";
import type { LogRecord, SnapshotRecord, SnapshotsRecord } from "./records.ts";
import {
  columnRows,
  resultColumns,
  rowSnapshot,
  sliceColumns,
} from "../engine/snapshot_columns.ts";
import type { RunRecorder, Unsequenced } from "./recorder.ts";
import { isFrameStep, nextFrameStep, nextSnapshotStep } from "../engine/snapshots.ts";
import { replayState } from "../engine/session_state.ts";
import { recycleColumns } from "../engine/worker_session.ts";

/** AbortSignal reason of a graceful server shutdown: checkpoint, then mark `interrupted`. */
export const SHUTDOWN = "shutdown";

/** What the driver hands over to be written as a checkpoint (server/runs/checkpoints.ts). */
export interface DriverCheckpoint {
  seq: number;
  step: number;
  diverged: number[];
  state: SessionState;
}

export interface DriveOptions {
  /** Target compute time per advance() call; smaller means fresher streams. */
  chunkMs?: number;
  /** Aborting stops the run (`stopped`), or with reason SHUTDOWN interrupts it (`interrupted`). */
  signal?: AbortSignal;
  /** Checkpoints every `intervalMs` of compute and at a SHUTDOWN abort. */
  checkpoint?: { intervalMs: number; save(ckpt: DriverCheckpoint): Promise<unknown> };
  /** The session continues a checkpointed run: the replicas already reported diverged. */
  resume?: { diverged: number[] };
  /**
   * The run is one shard of a larger one (server/cluster): its replicas all diverging does not
   * end it, as the whole run's other replicas go on; whoever merges the shards decides.
   */
  shard?: boolean;
}

export interface DriveResult {
  status: "finished" | "failed" | "stopped" | "interrupted";
  step: number;
  error?: string;
  stepsPerSecond: number;
}

/** The advance target about `ms` of compute ahead, on a snapshot step. */
function nextTarget(spec: RunSpec, step: number, rate: number, ms: number): number {
  const wanted = step + Math.max(1, Math.floor(rate * ms / 1000));
  let target = nextSnapshotStep(step, spec.every, spec.steps);
  if (wanted > target) {
    target = Math.min(spec.steps, Math.ceil(wanted / spec.every) * spec.every);
  }
  return target;
}

/** One advance() asked for: from which step, when, and its result to come. */
interface Call {
  from: number;
  t0: number;
  result: Promise<AdvanceResult>;
}

export async function driveRun(
  session: KernelSession,
  spec: RunSpec,
  recorder: RunRecorder,
  options: DriveOptions = {},
): Promise<DriveResult> {
  const chunkMs = options.chunkMs ?? 100;
  const planned = getExperiment(spec.experiment).plannedEvents(spec).sort((a, b) =>
    a.step - b.step
  );
  const exp = getExperiment(spec.experiment);
  const frameEvery = exp.frameEvery?.(spec) ?? exp.frames?.[0]?.everySnapshots ?? 0;
  // Planned events up to the session's step were written before (a resumed run).
  let plannedIndex = planned.findIndex((e) => e.step > session.step);
  if (plannedIndex < 0) plannedIndex = planned.length;
  const diverged = new Set<number>(options.resume?.diverged ?? []);
  let rate = 0; // steps per second, measured
  const started = performance.now();
  const startStep = session.step;
  let lastCheckpoint = started;
  let wallMs = 0;
  // Step the session has reached in the results taken so far (with a call in flight, a
  // session's own `step` may already be past it).
  let reached = session.step;
  const pipelined = session.pipelined === true;
  /** The call in flight that the loop takes next (a pipelined session only). */
  let pending: Call | undefined;
  const issue = (from: number): Call => {
    let target = rate === 0
      ? Math.min(spec.steps, nextSnapshotStep(from, spec.every, spec.steps))
      : nextTarget(spec, from, rate, chunkMs);
    // Calls end on every frame step, so frames come at fixed steps (isFrameStep).
    if (frameEvery > 0) target = Math.min(target, nextFrameStep(from, spec, frameEvery));
    const result = session.advance(target, { columns: true });
    // Taken later, or dropped when the run ends first: never an unhandled rejection.
    result.catch(() => {});
    return { from, t0: performance.now(), result };
  };
  const checkpointDue = () =>
    options.checkpoint !== undefined &&
    performance.now() - lastCheckpoint >= options.checkpoint.intervalMs;
  const checkpoint = async () => {
    if (!options.checkpoint) return;
    const state = (await session.exportState?.()) ?? replayState(spec, session, wallMs);
    // The log first: a checkpoint must never point past what the disk holds.
    await recorder.flush();
    await options.checkpoint.save({
      seq: recorder.checkpointSeq,
      step: reached,
      diverged: [...diverged].sort((a, b) => a - b),
      state,
    });
    lastCheckpoint = performance.now();
  };
  try {
    recorder.setStatus("running");
    do {
      // A call in flight is taken first (its records are computed), then the abort.
      if (options.signal?.aborted && !pending) {
        if (options.signal.reason === SHUTDOWN) {
          await checkpoint();
          recorder.setStatus(
            "interrupted",
            "the server was shut down while this run was in flight",
            true,
          );
          return {
            status: "interrupted",
            step: reached,
            stepsPerSecond: rateSince(started, reached - startStep),
          };
        }
        recorder.setStatus("stopped");
        return {
          status: "stopped",
          step: reached,
          stepsPerSecond: rateSince(started, reached - startStep),
        };
      }
      const call = pending ?? issue(reached);
      pending = undefined;
      const result = await call.result;
      reached = session.step;
      const dt = performance.now() - call.t0;
      if (reached > call.from && dt > 0) {
        const r = (reached - call.from) / (dt / 1000);
        rate = rate === 0 ? r : 0.5 * rate + 0.5 * r;
      }
      // A session in a Worker computes the next call while this one is written. Not when a
      // checkpoint is due (it must describe exactly what the log holds) or the run is stopping.
      if (pipelined && reached < spec.steps && !options.signal?.aborted && !checkpointDue()) {
        pending = issue(reached);
      }
      const snaps = resultColumns(result, spec.replicas);
      const snapCount = columnRows(snaps);
      const now = Date.now();
      const records: Unsequenced<LogRecord>[] = [];
      // Planned events first, then a stable sort by step: at a step that has both, the planned
      // one always comes first, however the run was split into calls (and after a resume).
      const events: RunEvent[] = [];
      const plannedNow = new Set<RunEvent>();
      while (plannedIndex < planned.length && planned[plannedIndex].step <= reached) {
        plannedNow.add(planned[plannedIndex]);
        events.push(planned[plannedIndex++]);
      }
      events.push(...result.events);
      events.sort((a, b) => a.step - b.step);
      for (const e of events) if (e.type === "replica_diverged") diverged.add(e.replica);
      // Interleave by step: a planned event at step s precedes the snapshot at step s, an event
      // the session reports at step s follows it. A session reports an event at s in the call
      // that reaches s (a divergence, a note on snapshot s) or in the call that runs update s
      // (an anneal or a stop decided on U_s, and its note): the snapshot of s may end the
      // first call, so only "after it" is the same however the run was split into calls.
      let ei = 0;
      const before = (e: RunEvent, at: number) =>
        e.step < at || (e.step === at && plannedNow.has(e));
      // Snapshots with no event between them go as one block (docs/storage.md).
      for (let i = 0; i < snapCount;) {
        while (ei < events.length && before(events[ei], snaps.steps[i])) {
          records.push({ type: "event", time: now, event: events[ei++] });
        }
        let end = i + 1;
        while (
          end < snapCount && end - i < MAX_BLOCK_SNAPSHOTS &&
          !(ei < events.length && before(events[ei], snaps.steps[end]))
        ) end++;
        records.push(snapshotRecords(snaps, i, end, now));
        i = end;
      }
      while (ei < events.length) records.push({ type: "event", time: now, event: events[ei++] });
      for (const f of result.frames) {
        if (frameEvery > 0 && !isFrameStep(f.step, spec, frameEvery)) continue;
        records.push({
          type: "frame",
          step: f.step,
          time: now,
          name: f.name,
          width: f.width,
          values: f.values,
        });
      }
      if (snapCount > 0) wallMs = snaps.wallMs[snapCount - 1];
      recorder.emit(records);
      // Written, indexed and copied where kept (the ring): the kernel may reuse the memory.
      if (result.columns) recycleColumns(result.columns);
      if (!pending && reached < spec.steps && checkpointDue()) await checkpoint();
      if (!options.shard && diverged.size === spec.replicas && spec.replicas > 0) {
        const error = `all ${spec.replicas} replicas diverged to a non-finite state (last at step ${
          Math.max(...events.filter((e) => e.type === "replica_diverged").map((e) => e.step), 0) ||
          reached
        }); lower the learning rate or the noise`;
        recorder.setStatus("failed", error);
        return {
          status: "failed",
          step: reached,
          error,
          stepsPerSecond: rateSince(started, reached - startStep),
        };
      }
    } while (reached < spec.steps);
    recorder.setStatus("finished");
    return {
      status: "finished",
      step: reached,
      stepsPerSecond: rateSince(started, reached - startStep),
    };
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    // After a write error the recorder has already ended the run `failed` and ignores this.
    if (!recorder.writeFailed) recorder.setStatus("failed", error);
    return {
      status: "failed",
      step: reached,
      error,
      stepsPerSecond: rateSince(started, reached - startStep),
    };
  }
}

/**
 * Snapshots per block at most: a block is read whole wherever one of its snapshots is wanted
 * (a replay's start, a history query's edges), so it stays small (4096 × 4 replicas × 4
 * metrics is 300 KB) while its per-record cost is spread over thousands of snapshots.
 */
export const MAX_BLOCK_SNAPSHOTS = 4096;

/** Rows [from, to) of the columns as one record: a snapshot, or a block of several. */
function snapshotRecords(
  c: SnapshotColumns,
  from: number,
  to: number,
  time: number,
): Unsequenced<SnapshotRecord | SnapshotsRecord> {
  if (to - from === 1) {
    const s = rowSnapshot(c, from);
    return { type: "snapshot", step: s.step, wall_ms: s.wallMs, time, metrics: s.metrics };
  }
  const rows = sliceColumns(c, from, to);
  return {
    type: "snapshots",
    time,
    steps: rows.steps,
    wall_ms: rows.wallMs,
    metrics: rows.metrics,
  };
}

function rateSince(startedMs: number, steps: number): number {
  const s = (performance.now() - startedMs) / 1000;
  return s > 0 ? steps / s : 0;
}
