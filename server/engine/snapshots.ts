/** Snapshot bookkeeping shared by every backend, so all agree on which steps are reported. */
import type { AdvanceResult, Frame, RunEvent, Snapshot } from "../experiments/types.ts";
import type { ColumnBuilder } from "./snapshot_columns.ts";

/** Snapshot steps are 0, every, 2·every, … and the final step. */
export function isSnapshotStep(step: number, every: number, steps: number): boolean {
  return step === steps || step % every === 0;
}

/** The first snapshot step strictly after `step` (or `steps` itself). */
export function nextSnapshotStep(step: number, every: number, steps: number): number {
  return Math.min(steps, (Math.floor(step / every) + 1) * every);
}

/**
 * Steps at which a frame is due when frames come every `frameEvery` snapshots: 0, every
 * multiple of every·frameEvery, the last step. Fixed steps rather than the ends of whatever
 * calls the driver happens to make, so that frames are reproducible (and a resumed run
 * writes the same frames as an uninterrupted one).
 */
export function isFrameStep(
  step: number,
  spec: { every: number; steps: number },
  frameEvery: number,
): boolean {
  if (frameEvery <= 0) return false;
  return step === 0 || step === spec.steps || step % (spec.every * frameEvery) === 0;
}

/** The first frame step strictly after `step` (the last step if none comes before it). */
export function nextFrameStep(
  step: number,
  spec: { every: number; steps: number },
  frameEvery: number,
): number {
  if (frameEvery <= 0) return spec.steps;
  const span = spec.every * frameEvery;
  return Math.min(spec.steps, (Math.floor(step / span) + 1) * span);
}

/** Assigns host wall times to snapshots computed in one call, by linear interpolation in step. */
export function stampWallTimes(
  snapshots: Snapshot[],
  fromStep: number,
  toStep: number,
  startMs: number,
  endMs: number,
): void {
  const span = Math.max(1, toStep - fromStep);
  for (const s of snapshots) {
    s.wallMs = startMs + (endMs - startMs) * Math.min(1, Math.max(0, (s.step - fromStep) / span));
  }
}

/** stampWallTimes for snapshots held column-wise: rows `fromRow` on get their wall times. */
export function stampColumnWallTimes(
  steps: Float64Array,
  wallMs: Float64Array,
  fromRow: number,
  fromStep: number,
  toStep: number,
  startMs: number,
  endMs: number,
): void {
  const span = Math.max(1, toStep - fromStep);
  for (let i = fromRow; i < steps.length; i++) {
    wallMs[i] = startMs +
      (endMs - startMs) * Math.min(1, Math.max(0, (steps[i] - fromStep) / span));
  }
}

export function emptyResult(): AdvanceResult {
  return { snapshots: [], events: [] as RunEvent[], frames: [] as Frame[] };
}

/** True if any entry of a float array is NaN or ±Infinity. */
export function hasNonFinite(
  values: ArrayLike<number>,
  offset = 0,
  length = values.length,
): boolean {
  for (let i = offset; i < offset + length; i++) if (!Number.isFinite(values[i])) return true;
  return false;
}

/**
 * What every CPU session's advance() does around its own stepping (the WebGPU sessions have
 * roundedAdvance): it owns the session's step, clamps a target to the run's length, reports
 * the step-0 snapshot on the first call, and stamps the call's snapshots with wall times.
 */
export class StepClock {
  /** Updates applied so far; the session's stepping moves it. */
  step = 0;
  #reportedInitial = false;
  #startMs = performance.now();

  constructor(readonly totalSteps: number) {}

  /** Whether the step-0 snapshot was reported (the next advance() then does not report it). */
  get initialReported(): boolean {
    return this.#reportedInitial;
  }

  /** Milliseconds of compute since the session (or the run it continues) started. */
  get elapsedMs(): number {
    return performance.now() - this.#startMs;
  }

  /**
   * Continues a run from a checkpoint: `step` updates done, the step-0 snapshot reported
   * (a checkpoint is only written after an advance()), wall times counting on from `wallMs`.
   */
  restore(step: number, wallMs: number): void {
    this.step = step;
    this.#reportedInitial = true;
    this.#startMs = performance.now() - wallMs;
  }

  /**
   * One advance(): `initial` reads the step-0 snapshot (first call only); `stepTo` steps from
   * `this.step` to the clamped target, moving `this.step` and filling the result.
   */
  advance(
    target: number,
    initial: () => Snapshot,
    stepTo: (target: number, result: AdvanceResult) => void,
  ): AdvanceResult {
    const result = emptyResult();
    const { from, t0 } = this.#stepTo(
      target,
      result,
      () => result.snapshots.push(initial()),
      stepTo,
    );
    stampWallTimes(result.snapshots, from, this.step, t0, this.elapsedMs);
    return result;
  }

  /**
   * advance() for a caller that asked for columns (AdvanceOptions): `initial` and `stepTo`
   * append their rows to `columns` instead of pushing snapshots, and the result reports them
   * in `result.columns`, stamped with wall times by the same rule.
   */
  advanceColumns(
    target: number,
    columns: ColumnBuilder,
    initial: () => void,
    stepTo: (target: number, result: AdvanceResult) => void,
  ): AdvanceResult {
    const result = emptyResult();
    const firstRow = columns.rows;
    const { from, t0 } = this.#stepTo(target, result, initial, stepTo);
    const c = columns.finish();
    stampColumnWallTimes(c.steps, c.wallMs, firstRow, from, this.step, t0, this.elapsedMs);
    result.columns = c;
    return result;
  }

  /** What both advances share: the step-0 report once, the stepping; where and when it began. */
  #stepTo(
    target: number,
    result: AdvanceResult,
    initial: () => void,
    stepTo: (target: number, result: AdvanceResult) => void,
  ): { from: number; t0: number } {
    const t0 = this.elapsedMs;
    const from = this.step;
    if (!this.#reportedInitial) {
      initial();
      this.#reportedInitial = true;
    }
    stepTo(Math.min(target, this.totalSteps), result);
    return { from, t0 };
  }
}
