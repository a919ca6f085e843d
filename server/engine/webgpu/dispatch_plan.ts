/**
 * How the WebGPU sessions cut an advance() call into dispatches, and the dispatches into
 * rounds (one submission and one readback each).
 *
 * Every dispatch ends at the next snapshot step at the latest, so a snapshot is always the
 * state after a dispatch's last update; each experiment adds its own cuts (its step cap per
 * dispatch, llvmpipe's loop limit, schedule milestones, phase switches) and its own
 * per-dispatch fields. A round holds as many dispatches as the params buffer has slots and
 * as many snapshots as the metrics buffer has slots.
 */
import type { RunSpec } from "../../experiments/types.ts";
import { isSnapshotStep, nextSnapshotStep } from "../snapshots.ts";

/** `slot` of a dispatch that does not end on a snapshot step. */
export const NO_SNAP = 0xFFFFFFFF;
/** Metrics read back per round; more snapshots than fit in one call take several rounds. */
const METRICS_BYTES_CAP = 16 << 20;
const MAX_SLOTS = 4096;
/** Dispatches per round: the params buffer holds one 256-byte slot for each. */
export const MAX_DISPATCHES_PER_ROUND = 1024;

export interface PlannedDispatch {
  /** Absolute step before the dispatch's first update. */
  start: number;
  count: number;
  /** Sequence number the kernel writes into its status words (never 0). */
  seq: number;
  /** Snapshot slot of the state after the dispatch (start + count), or NO_SNAP. */
  slot: number;
}

/** Sequence numbers 1, 2, …, 0xFFFFFFFE, 1, …: one counter per session. */
export function dispatchSequence(): () => number {
  let seq = 0;
  return () => (seq = seq >= 0xFFFFFFFE ? 1 : seq + 1);
}

/** Snapshot slots of the metrics buffer: all of the run's snapshots, within the caps. */
export function snapshotSlots(spec: RunSpec, bytesPerSnapshot: number): number {
  const totalSnapshots = Math.floor(spec.steps / spec.every) + 2;
  return Math.max(
    1,
    Math.min(MAX_SLOTS, totalSnapshots, Math.floor(METRICS_BYTES_CAP / bytesPerSnapshot)),
  );
}

export interface PlanOptions<X> {
  /** Sequence numbers of the session (dispatchSequence). */
  nextSeq: () => number;
  /** The experiment's fields of the zero-step dispatch reporting the initial snapshot. */
  initial?: X;
  /** The earliest step after `s` at which the experiment needs a dispatch to end. */
  cutAfter(s: number): number;
  /** The experiment's fields of the dispatch updating from step `s` to step `e`. */
  fields(s: number, e: number): X;
}

/** The dispatches taking the run from `from` to `target`, in order. */
export function planDispatches<X>(
  spec: RunSpec,
  from: number,
  target: number,
  options: PlanOptions<X>,
): (PlannedDispatch & X)[] {
  const out: (PlannedDispatch & X)[] = [];
  const { nextSeq } = options;
  if (options.initial !== undefined) {
    out.push({ ...options.initial, start: from, count: 0, seq: nextSeq(), slot: 0 });
  }
  for (let s = from; s < target;) {
    const e = Math.min(target, nextSnapshotStep(s, spec.every, spec.steps), options.cutAfter(s));
    out.push({
      ...options.fields(s, e),
      start: s,
      count: e - s,
      seq: nextSeq(),
      slot: isSnapshotStep(e, spec.every, spec.steps) ? 0 : NO_SNAP,
    });
    s = e;
  }
  return out;
}

/** Cuts a plan into rounds that fit the params and metrics buffers; numbers the slots. */
export function splitRounds<T extends PlannedDispatch>(dispatches: T[], slots: number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let used = 0;
  for (const dsp of dispatches) {
    const snap = dsp.slot !== NO_SNAP;
    if (cur.length === MAX_DISPATCHES_PER_ROUND || (snap && used === slots)) {
      out.push(cur);
      cur = [];
      used = 0;
    }
    if (snap) dsp.slot = used++;
    cur.push(dsp);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Snapshots a round writes (its used metrics slots). */
export function snapshotsIn(round: PlannedDispatch[]): number {
  return round.filter((dsp) => dsp.slot !== NO_SNAP).length;
}

/** The step after a round's last dispatch. */
export function roundEnd(round: PlannedDispatch[]): number {
  const last = round[round.length - 1];
  return last.start + last.count;
}
