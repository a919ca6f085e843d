/**
 * How many steps one call into a wasm kernel may take. V8 compiles a wasm function first
 * with its baseline compiler (Liftoff) and swaps in the optimised code (TurboFan) for later
 * calls only: a call that is already running stays in the baseline code to its end (there is
 * no on-stack replacement for wasm). One long first call (a whole run with a large `every`)
 * therefore ran 5–10× slower than the same run cut into calls (measured: linear-label-noise
 * 9.8k against 92k steps/s). Sessions cut every advance into calls of about
 * CALL_WORK_FLOP floating-point operations, a few milliseconds each: short enough that
 * the optimised code is used after the first few, long enough that the call's own cost (a
 * JS→wasm transition and a few array reads) is negligible.
 */
export const CALL_WORK_FLOP = 2 ** 25;

/** Steps per call for `replicas` replicas of `flopPerReplicaStep` work each, at least 1. */
export function stepsPerCall(replicas: number, flopPerReplicaStep: number): number {
  return Math.max(1, Math.floor(CALL_WORK_FLOP / (replicas * flopPerReplicaStep)));
}
