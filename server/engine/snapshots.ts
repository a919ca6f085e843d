/** Snapshot bookkeeping shared by every backend, so all agree on which steps are reported. */
import type { AdvanceResult, Frame, RunEvent, Snapshot } from "../experiments/types.ts";

/** Snapshot steps are 0, every, 2·every, … and the final step. */
export function isSnapshotStep(step: number, every: number, steps: number): boolean {
  return step === steps || step % every === 0;
}

/** The first snapshot step strictly after `step` (or `steps` itself). */
export function nextSnapshotStep(step: number, every: number, steps: number): number {
  return Math.min(steps, (Math.floor(step / every) + 1) * every);
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
