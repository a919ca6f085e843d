/**
 * Checkpoints of the P/Q experiments (`large-lr`, `label-noise-anneal`), every backend: the
 * SessionState arrays (docs/checkpoints.md) and how the float64 reference replicas and the
 * wasm kernel's memory map onto them. Kept apart from the model code so that both can change
 * independently.
 *   W, V         [R × half × d]   the two first-layer blocks (the second layer is fixed)
 *   anneal_step  [R]              step of the anneal, −1 before it
 *   lr           [R]              the learning rate of the last update
 *   pattern      [R × n·2·half]   the stored activation pattern (bytes), where has_pattern
 *   has_pattern  [R]              1 once the pattern was taken
 */
import type { SessionState, StateArray } from "./types.ts";
import type { PQReplicaView, PQShape } from "./pq_model.ts";
import { padRows, stateArray, unpadRows } from "../engine/session_state.ts";

function patternBytes(shape: PQShape): number {
  return shape.n * 2 * shape.half;
}

/** The reference replicas' checkpoint arrays. */
export function savePQReplicas(
  replicas: PQReplicaView[],
  shape: PQShape,
): { arrays: Record<string, StateArray> } {
  const R = replicas.length, size = shape.half * shape.d, pb = patternBytes(shape);
  const W = new Float64Array(R * size), V = new Float64Array(R * size);
  const annealStep = new Float64Array(R), lr = new Float64Array(R);
  const pattern = new Uint8Array(R * pb), hasPattern = new Uint8Array(R);
  replicas.forEach((st, r) => {
    W.set(st.net.W, r * size);
    V.set(st.net.V, r * size);
    annealStep[r] = st.annealedAt;
    lr[r] = st.lr;
    if (st.pattern) {
      pattern.set(st.pattern, r * pb);
      hasPattern[r] = 1;
    }
  });
  return {
    arrays: { W, V, anneal_step: annealStep, lr, pattern, has_pattern: hasPattern },
  };
}

/** Sets the reference replicas from a checkpoint (of any backend). */
export function loadPQReplicas(
  state: SessionState,
  replicas: PQReplicaView[],
  shape: PQShape,
): void {
  const R = replicas.length, size = shape.half * shape.d, pb = patternBytes(shape);
  const W = stateArray(state, "W", R * size), V = stateArray(state, "V", R * size);
  const annealStep = stateArray(state, "anneal_step", R), lr = stateArray(state, "lr", R);
  const pattern = stateArray(state, "pattern", R * pb);
  const hasPattern = stateArray(state, "has_pattern", R);
  replicas.forEach((st, r) => {
    st.net.W.set(W.subarray(r * size, r * size + size));
    st.net.V.set(V.subarray(r * size, r * size + size));
    st.annealedAt = annealStep[r];
    st.lr = lr[r];
    st.pattern = hasPattern[r] ? Uint8Array.from(pattern.subarray(r * pb, r * pb + pb)) : null;
  });
}

/** The wasm P/Q kernel's memory, as its session sees it (server/engine/wasm/pq_model.ts). */
export interface PQKernelView {
  shape: PQShape;
  replicas: number;
  /** Padded row length of W and V. */
  dp: number;
  /** [R × half × dp] float32 views. */
  W(): Float32Array;
  V(): Float32Array;
  /** [R × 4] float64: anneal step, lr, divergence step, loss at the anneal. */
  state(): Float64Array;
  /** [R × n·2·half] bytes. */
  pattern(): Uint8Array;
  /** Whether replica r's pattern was stored. */
  hasPattern(r: number): boolean;
}

/** The wasm kernel's checkpoint arrays (divergence steps included). */
export function exportPQKernel(k: PQKernelView): Record<string, StateArray> {
  const { shape, replicas: R, dp } = k;
  const rows = R * shape.half;
  const st = k.state();
  const annealStep = new Float64Array(R), lr = new Float64Array(R);
  const diverged = new Float64Array(R), annealLoss = new Float64Array(R);
  const hasPattern = new Uint8Array(R);
  for (let r = 0; r < R; r++) {
    annealStep[r] = st[4 * r];
    lr[r] = st[4 * r + 1];
    diverged[r] = st[4 * r + 2];
    annealLoss[r] = st[4 * r + 3];
    hasPattern[r] = k.hasPattern(r) ? 1 : 0;
  }
  return {
    W: unpadRows(k.W(), rows, shape.d, dp),
    V: unpadRows(k.V(), rows, shape.d, dp),
    anneal_step: annealStep,
    lr,
    pattern: k.pattern().slice(),
    has_pattern: hasPattern,
    diverged,
    anneal_loss: annealLoss,
  };
}

/** Sets the wasm kernel's memory from a checkpoint (of any backend). */
export function restorePQKernel(k: PQKernelView, state: SessionState): void {
  const { shape, replicas: R, dp } = k;
  const rows = R * shape.half;
  padRows(k.W(), stateArray(state, "W", rows * shape.d), rows, shape.d, dp);
  padRows(k.V(), stateArray(state, "V", rows * shape.d), rows, shape.d, dp);
  const annealStep = stateArray(state, "anneal_step", R), lr = stateArray(state, "lr", R);
  const diverged = stateArray(state, "diverged", R);
  // The reference does not keep the loss at the anneal: the event that needs it is written.
  const annealLoss = state.arrays.anneal_loss;
  const st = k.state();
  for (let r = 0; r < R; r++) {
    st[4 * r] = annealStep[r];
    st[4 * r + 1] = lr[r];
    st[4 * r + 2] = diverged[r];
    st[4 * r + 3] = annealLoss?.length === R ? annealLoss[r] : NaN;
  }
  k.pattern().set(stateArray(state, "pattern", R * patternBytes(shape)));
}
