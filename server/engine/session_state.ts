/**
 * Building and checking SessionStates (the backend-neutral checkpoint of a KernelSession,
 * docs/checkpoints.md), and the pieces every backend's export/restore shares: named arrays
 * with checked lengths, the kernels' padded rows, divergence steps.
 */
import type {
  BackendName,
  KernelSession,
  RunSpec,
  SessionState,
  StateArray,
} from "../experiments/types.ts";

export const SESSION_STATE_FORMAT = "lab-session-state";

export function newSessionState(
  spec: RunSpec,
  backend: BackendName,
  step: number,
  wallMs: number,
  arrays: Record<string, StateArray>,
  counters: Record<string, number> = {},
): SessionState {
  return {
    format: SESSION_STATE_FORMAT,
    version: 1,
    experiment: spec.experiment,
    step,
    backend,
    wallMs,
    arrays,
    counters,
  };
}

/** A state without arrays: opening it re-runs the run from step 0 (see SessionState.replay). */
export function replayState(spec: RunSpec, session: KernelSession, wallMs: number): SessionState {
  return { ...newSessionState(spec, session.backend, session.step, wallMs, {}), replay: true };
}

/** Refuses a state that does not belong to this spec, with a message naming what differs. */
export function checkSessionState(state: SessionState, spec: RunSpec): void {
  if (state.format !== SESSION_STATE_FORMAT || state.version !== 1) {
    throw new Error("checkpoint: not a lab session state (format/version)");
  }
  if (state.experiment !== spec.experiment) {
    throw new Error(
      `checkpoint: experiment ${state.experiment} does not match the run's ${spec.experiment}`,
    );
  }
  if (!Number.isInteger(state.step) || state.step < 0 || state.step > spec.steps) {
    throw new Error(`checkpoint: step ${state.step} is outside 0..${spec.steps}`);
  }
}

/** The array `name` of a state, checked to hold `length` values. */
export function stateArray(state: SessionState, name: string, length: number): StateArray {
  const a = state.arrays[name];
  if (!a || a.length !== length) {
    throw new Error(
      `checkpoint: array ${name} has ${a ? a.length : "no"} values, the run needs ${length}`,
    );
  }
  return a;
}

/** A counter of a state, or `fallback` when the state has none. */
export function stateCounter(state: SessionState, name: string, fallback?: number): number {
  const v = state.counters[name];
  if (typeof v === "number") return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`checkpoint: counter ${name} is missing`);
}

/** [rows × width] from a kernel's [rows × padded] layout. */
export function unpadRows(
  src: ArrayLike<number>,
  rows: number,
  width: number,
  padded: number,
): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < width; k++) out[r * width + k] = src[r * padded + k];
  }
  return out;
}

/** [rows × width] into a kernel's [rows × padded] layout (padding left as it is). */
export function padRows(
  dst: Float32Array,
  src: ArrayLike<number>,
  rows: number,
  width: number,
  padded: number,
): void {
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < width; k++) dst[r * padded + k] = src[r * width + k];
  }
}

/** Divergence steps (−1: finite) as the state's float64 `diverged` array. */
export function divergedArray(steps: ArrayLike<number>): Float64Array {
  return Float64Array.from(steps as ArrayLike<number>);
}
