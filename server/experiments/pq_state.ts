/**
 * Checkpoints of the P/Q experiments (`large-lr`, `label-noise-anneal`), every backend: the
 * SessionState arrays (docs/checkpoints.md) and how the float64 reference replicas and the
 * wasm kernel's memory map onto them. Kept apart from the model code so that both can change
 * independently.
 *   W, V                 [R × halfP × d], [R × halfQ × d]   the two first-layer blocks
 *                                        (halfP = m_p/2, halfQ = m_q/2; the second layer is fixed)
 *   W_noise              [R × halfP × d]  the tracked noise part W̃ of W (pq_model.ts
 *                                        trackNoisePart); a checkpoint without it (written
 *                                        before it existed) restores W̃ as NaN: its metrics NaN
 *   anneal_step          [R]              step of the anneal, −1 before it
 *   stop_step            [R]              step of the stop (stopping rule), −1 before it
 *   lr                   [R]              the learning rate of the last update
 *   pattern              [R × n·m]        the stored activation pattern (bytes, m = halfP + halfQ
 *                                        units per example), where has_pattern
 *   has_pattern          [R]              1 once the pattern was taken
 *   at_anneal, at_stop   [R × K]          PHASE_KEYS' values at the anneal / stop (NaN before)
 *   race                 [R × 4]          RaceWatch's first crossings (pq_race.ts)
 *   floor_tracks         [R × 4]          FloorWatch's tracks (pq_floor.ts; large-lr only)
 *   floor_points         [Σ × 2]          their (step, loss) points
 * The wasm kernel adds what only its memory holds: anneal_loss and stop_loss [R] (the loss
 * its anneal and stop events quote) and anneal_W, anneal_V (shaped as W, V; its copy of the
 * weights at the anneal, from which the host evaluates at_anneal). Restored elsewhere they
 * are not needed: the events and values that use them were produced before the checkpoint.
 * The WebGPU kernel keeps no values at the anneal and has no stopping rule: its checkpoints
 * hold at_anneal and at_stop as NaN and stop_step as −1 (exportPQDevice).
 */
import type { SessionState, StateArray } from "./types.ts";
import type { PQReplicaView, PQShape } from "./pq_model.ts";
import { initialPhase, PHASE_KEYS, type PhaseState } from "./pq_anneal.ts";
import type { RaceWatch } from "./pq_race.ts";
import type { FloorWatch } from "./pq_floor.ts";
import { padRows, stateArray, unpadRows } from "../engine/session_state.ts";

/** The session-level watches of a P/Q run (the floor watch: large-lr only). */
export interface PQWatches {
  race: RaceWatch;
  floor?: FloorWatch;
}

function patternBytes(shape: PQShape): number {
  return shape.n * shape.m;
}

/** Phase steps and values of every replica, and the watches' state. */
function savePhasesAndWatches(
  phases: PhaseState[],
  watches: PQWatches,
): Record<string, StateArray> {
  const R = phases.length, K = PHASE_KEYS.length;
  const stopStep = new Float64Array(R);
  const atAnneal = new Float64Array(R * K).fill(NaN), atStop = new Float64Array(R * K).fill(NaN);
  phases.forEach((ph, r) => {
    stopStep[r] = ph.stoppedAt;
    PHASE_KEYS.forEach((key, i) => {
      if (ph.atAnneal) atAnneal[r * K + i] = ph.atAnneal[key];
      if (ph.atStop) atStop[r * K + i] = ph.atStop[key];
    });
  });
  const arrays: Record<string, StateArray> = {
    stop_step: stopStep,
    at_anneal: atAnneal,
    at_stop: atStop,
    race: watches.race.save(),
  };
  if (watches.floor) {
    const { tracks, points } = watches.floor.save();
    arrays.floor_tracks = tracks;
    arrays.floor_points = points;
  }
  return arrays;
}

/** Sets the phases' stop step and values (not annealedAt: each backend keeps it its way). */
function loadPhasesAndWatches(state: SessionState, phases: PhaseState[], watches: PQWatches) {
  const R = phases.length, K = PHASE_KEYS.length;
  const stopStep = stateArray(state, "stop_step", R);
  const atAnneal = stateArray(state, "at_anneal", R * K);
  const atStop = stateArray(state, "at_stop", R * K);
  const values = (a: StateArray, r: number, present: boolean) =>
    present ? Object.fromEntries(PHASE_KEYS.map((key, i) => [key, a[r * K + i]])) : null;
  phases.forEach((ph, r) => {
    ph.stoppedAt = stopStep[r];
    // A phase that happened has its values (finite or not); one that did not, none.
    ph.atAnneal = values(atAnneal, r, ph.annealedAt >= 0);
    ph.atStop = values(atStop, r, ph.stoppedAt >= 0);
  });
  watches.race.load(stateArray(state, "race", 4 * R));
  if (watches.floor) {
    const tracks = stateArray(state, "floor_tracks", 4 * R);
    let points = 0;
    for (let r = 0; r < R; r++) points += tracks[4 * r + 3];
    watches.floor.load(tracks, stateArray(state, "floor_points", 2 * points));
  }
}

/** W_noise of a checkpoint, or NaN for one written before W̃ was tracked. */
function noisePart(state: SessionState, length: number): StateArray {
  return state.arrays.W_noise
    ? stateArray(state, "W_noise", length)
    : new Float64Array(length).fill(NaN);
}

/** The reference replicas' checkpoint arrays. */
export function savePQReplicas(
  replicas: PQReplicaView[],
  shape: PQShape,
  watches: PQWatches,
): { arrays: Record<string, StateArray> } {
  const R = replicas.length, pb = patternBytes(shape);
  const sizeW = shape.halfP * shape.d, sizeV = shape.halfQ * shape.d;
  const W = new Float64Array(R * sizeW), V = new Float64Array(R * sizeV);
  const Wn = new Float64Array(R * sizeW).fill(NaN);
  const annealStep = new Float64Array(R), lr = new Float64Array(R);
  const pattern = new Uint8Array(R * pb), hasPattern = new Uint8Array(R);
  replicas.forEach((st, r) => {
    W.set(st.net.W, r * sizeW);
    if (st.net.Wn) Wn.set(st.net.Wn, r * sizeW);
    V.set(st.net.V, r * sizeV);
    annealStep[r] = st.annealedAt;
    lr[r] = st.lr;
    if (st.pattern) {
      pattern.set(st.pattern, r * pb);
      hasPattern[r] = 1;
    }
  });
  return {
    arrays: {
      W,
      V,
      W_noise: Wn,
      anneal_step: annealStep,
      lr,
      pattern,
      has_pattern: hasPattern,
      ...savePhasesAndWatches(replicas, watches),
    },
  };
}

/** Sets the reference replicas from a checkpoint (of any backend). */
export function loadPQReplicas(
  state: SessionState,
  replicas: PQReplicaView[],
  shape: PQShape,
  watches: PQWatches,
): void {
  const R = replicas.length, pb = patternBytes(shape);
  const sizeW = shape.halfP * shape.d, sizeV = shape.halfQ * shape.d;
  const W = stateArray(state, "W", R * sizeW), V = stateArray(state, "V", R * sizeV);
  const Wn = noisePart(state, R * sizeW);
  const annealStep = stateArray(state, "anneal_step", R), lr = stateArray(state, "lr", R);
  const pattern = stateArray(state, "pattern", R * pb);
  const hasPattern = stateArray(state, "has_pattern", R);
  replicas.forEach((st, r) => {
    st.net.W.set(W.subarray(r * sizeW, r * sizeW + sizeW));
    st.net.Wn?.set(Wn.subarray(r * sizeW, r * sizeW + sizeW));
    st.net.V.set(V.subarray(r * sizeV, r * sizeV + sizeV));
    st.annealedAt = annealStep[r];
    st.lr = lr[r];
    st.pattern = hasPattern[r] ? Uint8Array.from(pattern.subarray(r * pb, r * pb + pb)) : null;
  });
  loadPhasesAndWatches(state, replicas, watches);
}

/** The wasm P/Q kernel's memory, as its session sees it (server/engine/wasm/pq_model.ts). */
export interface PQKernelView {
  shape: PQShape;
  replicas: number;
  /** Padded row length of W and V. */
  dp: number;
  /** [R × halfP × dp] and [R × halfQ × dp] float32 views. */
  W(): Float32Array;
  V(): Float32Array;
  /** [R × halfP × dp] float32: the tracked noise part W̃ of W. */
  Wn(): Float32Array;
  /** [R × (halfP + halfQ) × dp] float32: W's rows then V's of each replica at its anneal. */
  atAnneal(): Float32Array;
  /** [R × 8] float64: the KERNEL_SLOTS, then two unused slots. */
  state(): Float64Array;
  /** [R × n·m] bytes. */
  pattern(): Uint8Array;
  /** Whether replica r's pattern was stored. */
  hasPattern(r: number): boolean;
}

/** The kernel's per-replica float64 state row (kernels-as/pq_model.ts, S_*), as array names. */
const KERNEL_SLOTS = ["anneal_step", "lr", "diverged", "anneal_loss", "stop_step", "stop_loss"];
const KERNEL_ROW = 8;
/** Slots that the reference does not keep: NaN when restoring its checkpoint. */
const KERNEL_ONLY = new Set(["anneal_loss", "stop_loss"]);

/** Where block b (0: W, 1: V) of replica r sits in the anneal-time copy, in floats. */
function annealRange(k: PQKernelView, r: number, b: number): [number, number] {
  const { shape, dp } = k;
  const start = r * shape.m * dp + (b === 0 ? 0 : shape.halfP * dp);
  return [start, start + (b === 0 ? shape.halfP : shape.halfQ) * dp];
}

/** The anneal-time copy's rows of block b (0: W, 1: V) as [R × half_b × dp]. */
function annealBlock(k: PQKernelView, b: number): Float32Array {
  const { replicas: R, shape, dp } = k;
  const block = (b === 0 ? shape.halfP : shape.halfQ) * dp;
  const all = k.atAnneal(), out = new Float32Array(R * block);
  for (let r = 0; r < R; r++) out.set(all.subarray(...annealRange(k, r, b)), r * block);
  return out;
}

/** The wasm kernel's checkpoint arrays (divergence steps included). */
export function exportPQKernel(
  k: PQKernelView,
  phases: PhaseState[],
  watches: PQWatches,
): Record<string, StateArray> {
  const { shape, replicas: R, dp } = k;
  const rowsW = R * shape.halfP, rowsV = R * shape.halfQ;
  const st = k.state();
  const arrays: Record<string, StateArray> = {};
  KERNEL_SLOTS.forEach((name, i) => {
    arrays[name] = Float64Array.from({ length: R }, (_, r) => st[KERNEL_ROW * r + i]);
  });
  return {
    ...savePhasesAndWatches(phases, watches),
    ...arrays,
    W: unpadRows(k.W(), rowsW, shape.d, dp),
    V: unpadRows(k.V(), rowsV, shape.d, dp),
    W_noise: unpadRows(k.Wn(), rowsW, shape.d, dp),
    anneal_W: unpadRows(annealBlock(k, 0), rowsW, shape.d, dp),
    anneal_V: unpadRows(annealBlock(k, 1), rowsV, shape.d, dp),
    pattern: k.pattern().slice(),
    has_pattern: Uint8Array.from({ length: R }, (_, r) => k.hasPattern(r) ? 1 : 0),
  };
}

/**
 * Sets the wasm kernel's memory and the session's phases and watches from a checkpoint (of
 * any backend). The phases mark the anneals and stops up to the checkpoint as reported.
 */
export function restorePQKernel(
  k: PQKernelView,
  state: SessionState,
  phases: PhaseState[],
  watches: PQWatches,
): void {
  const { shape, replicas: R, dp } = k;
  const { halfP, halfQ, d } = shape;
  const rowsW = R * halfP, rowsV = R * halfQ;
  padRows(k.W(), stateArray(state, "W", rowsW * d), rowsW, d, dp);
  padRows(k.V(), stateArray(state, "V", rowsV * d), rowsV, d, dp);
  padRows(k.Wn(), noisePart(state, rowsW * d), rowsW, d, dp);
  if (state.arrays.anneal_W) {
    const W = stateArray(state, "anneal_W", rowsW * d);
    const V = stateArray(state, "anneal_V", rowsV * d);
    const all = k.atAnneal();
    for (let r = 0; r < R; r++) {
      const at = (b: number) => all.subarray(...annealRange(k, r, b));
      padRows(at(0), W.subarray(r * halfP * d, (r + 1) * halfP * d), halfP, d, dp);
      padRows(at(1), V.subarray(r * halfQ * d, (r + 1) * halfQ * d), halfQ, d, dp);
    }
  }
  const st = k.state();
  KERNEL_SLOTS.forEach((name, i) => {
    const a = KERNEL_ONLY.has(name) && !state.arrays[name] ? null : stateArray(state, name, R);
    for (let r = 0; r < R; r++) st[KERNEL_ROW * r + i] = a ? a[r] : NaN;
  });
  k.pattern().set(stateArray(state, "pattern", R * patternBytes(shape)));
  phases.forEach((ph, r) => ph.annealedAt = st[KERNEL_ROW * r]);
  loadPhasesAndWatches(state, phases, watches);
}

/** The WebGPU P/Q session's state, unpadded (server/engine/webgpu/pq_model.ts). */
export interface PQDeviceState {
  /** [R × half × d] float32. */
  W: Float32Array;
  V: Float32Array;
  /** [R]: step of the anneal, of the divergence (−1: none), the last update's rate. */
  annealStep: Float64Array;
  diverged: Float64Array;
  lr: Float64Array;
  /** [R × n·2·half] bytes, and [R] whether each replica's pattern was stored. */
  pattern: Uint8Array;
  hasPattern: Uint8Array;
}

/** Phases that know only their anneal step: what the WebGPU session keeps. */
function annealOnlyPhases(annealStep: ArrayLike<number>): PhaseState[] {
  return Array.from(annealStep, (at) => ({ ...initialPhase(), annealedAt: at }));
}

/** The WebGPU session's checkpoint arrays (divergence steps included). */
export function exportPQDevice(s: PQDeviceState, watches: PQWatches): Record<string, StateArray> {
  return {
    ...savePhasesAndWatches(annealOnlyPhases(s.annealStep), watches),
    W: s.W,
    V: s.V,
    anneal_step: s.annealStep,
    lr: s.lr,
    diverged: s.diverged,
    pattern: s.pattern,
    has_pattern: s.hasPattern,
  };
}

/**
 * A checkpoint (of any backend) as the WebGPU session loads it, the weights rounded to
 * float32; sets the watches. Values at the anneal or stop that the state carries are not
 * used: the WebGPU session does not report them.
 */
export function loadPQDevice(
  state: SessionState,
  shape: PQShape,
  replicas: number,
  watches: PQWatches,
): PQDeviceState {
  const R = replicas, size = R * shape.half * shape.d;
  const annealStep = Float64Array.from(stateArray(state, "anneal_step", R));
  loadPhasesAndWatches(state, annealOnlyPhases(annealStep), watches);
  return {
    W: Float32Array.from(stateArray(state, "W", size)),
    V: Float32Array.from(stateArray(state, "V", size)),
    annealStep,
    diverged: Float64Array.from(stateArray(state, "diverged", R)),
    lr: Float64Array.from(stateArray(state, "lr", R)),
    pattern: Uint8Array.from(stateArray(state, "pattern", R * patternBytes(shape))),
    hasPattern: Uint8Array.from(stateArray(state, "has_pattern", R)),
  };
}
