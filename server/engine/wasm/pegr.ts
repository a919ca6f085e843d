/**
 * KernelSession for PEGR on the wasm kernel (kernels-as/pegr.ts). The kernel owns the
 * training steps (float32 weights, SIMD) and the test accuracy; this side copies the
 * prepared data in once, advances the kernel from snapshot step to snapshot step, and
 * computes the other metrics from the float32 weights in float64 with the reference's own
 * functions (pegrMetrics), so every backend reports the same definitions. A snapshot costs
 * O(m·n·d) here plus O(m·n_test·d) in the kernel, against O(m·n·d) per training step.
 */
import type {
  AdvanceOptions,
  AdvanceResult,
  KernelSession,
  RunSpec,
  SessionState,
  Snapshot,
} from "../../experiments/types.ts";
import {
  PEGR_METRICS,
  pegrMetrics,
  type PegrPrepared,
  type PegrReplica,
  preparePegr,
  replicaView,
} from "../../experiments/pegr.ts";
import { newDivergences, settled } from "../session_results.ts";
import { wasmAdapterOf } from "./builds.ts";
import { isSnapshotStep, nextSnapshotStep, StepClock } from "../snapshots.ts";
import { inAskedForm } from "../snapshot_columns.ts";
import { stepsPerCall } from "./call_length.ts";
import {
  checkSessionState,
  newSessionState,
  padRows,
  stateArray,
  unpadRows,
} from "../session_state.ts";

/** The exports of build/wasm/pegr.wasm (pointers are byte offsets into memory). */
export interface PegrExports {
  memory: WebAssembly.Memory;
  setup(
    d: number,
    n: number,
    m: number,
    nTest: number,
    replicas: number,
    sets: number,
    algo: number,
  ): void;
  setGlobals(muNorm: number, regOff: number, fgrScale: number): void;
  paddedDim(): number;
  zPtr(): number;
  yPtr(): number;
  zTestPtr(): number;
  yTestPtr(): number;
  zGramPtr(): number;
  wPtr(): number;
  hyperPtr(): number;
  divergedPtr(): number;
  advance(from: number, count: number): void;
  testAccuracy(replica: number): number;
}

const METRIC_NAMES = PEGR_METRICS.map((x) => x.name);
/** Steps per kernel call at most (the kernel counts a call's steps in an i32). */
const MAX_CALL_STEPS = 1 << 30;
/** asc's stub allocator serves blocks of at most 1 GiB; wasm32 memory ends at 4 GiB. */
const MAX_BLOCK_BYTES = 2 ** 30;
const MAX_TOTAL_BYTES = 3.5 * 2 ** 30;

function checkMemory(spec: RunSpec) {
  const p = spec.params;
  const d = p.d as number, n = p.n as number, m = p.m as number, nTest = p.n_test as number;
  const R = spec.replicas, sets = p.data === "per-replica" ? R : 1;
  const dp = Math.ceil(d / 4) * 4;
  const blocks = [sets * n * dp * 4, sets * nTest * dp * 4, R * 2 * m * dp * 4];
  const total = blocks.reduce((a, b) => a + b, 0) + sets * (n + nTest) * 4 + sets * n * n * 8;
  if (Math.max(...blocks) > MAX_BLOCK_BYTES || total > MAX_TOTAL_BYTES) {
    throw new Error(
      `pegr with ${R} replicas, d=${d}, n=${n}, m=${m}, n_test=${nTest} needs ${
        (total / 2 ** 30).toFixed(1)
      } GiB of wasm memory (at most 1 GiB per array, 3.5 GiB in all): use fewer replicas, ` +
        `data=shared, a smaller n_test, or the webgpu backend`,
    );
  }
}

/** Copies [rows × d] into the kernel's [rows × dp] layout (zero padding stays zero). */
function copyPadded(
  dst: Float32Array,
  src: ArrayLike<number>,
  rows: number,
  d: number,
  dp: number,
) {
  for (let row = 0; row < rows; row++) {
    for (let k = 0; k < d; k++) dst[row * dp + k] = src[row * d + k];
  }
}

export function openPegrSession(
  spec: RunSpec,
  instance: WebAssembly.Instance,
  state?: SessionState,
): KernelSession {
  checkMemory(spec);
  const prep: PegrPrepared = preparePegr(spec);
  const { d, n, m, nTest } = prep;
  const R = spec.replicas, rows = 2 * m;
  const sets = prep.dataPerReplica ? R : 1;
  // <w_q, ξ_i> and Σ_i β_{q,i} ξ_i: two 2m×n×d multiply-adds per step.
  const callSteps = Math.min(MAX_CALL_STEPS, stepsPerCall(R, 8 * m * n * d));
  let exports: PegrExports | null = instance.exports as unknown as PegrExports;
  const kernel = (): PegrExports => {
    if (!exports) throw new Error("the wasm pegr session was disposed");
    return exports;
  };
  const k = kernel();
  k.setup(d, n, m, nTest, R, sets, prep.algoCode);
  k.setGlobals(prep.muNorm, prep.regOff, prep.fgrScale);
  const dp = k.paddedDim();
  // Views are made per use: they would detach if the memory grew after they were taken.
  const f32 = (ptr: number, length: number) =>
    new Float32Array(kernel().memory.buffer, ptr, length);
  const f64 = (ptr: number, length: number) =>
    new Float64Array(kernel().memory.buffer, ptr, length);
  copyPadded(f32(k.zPtr(), sets * n * dp), prep.Z, sets * n, d, dp);
  f32(k.yPtr(), sets * n).set(prep.y);
  copyPadded(f32(k.zTestPtr(), sets * nTest * dp), prep.ZTest, sets * nTest, d, dp);
  f32(k.yTestPtr(), sets * nTest).set(prep.yTest);
  f64(k.zGramPtr(), sets * n * n).set(prep.zGram);
  const hyper = f64(k.hyperPtr(), 4 * R);
  // The float32 initial weights; the coefficient recovery measures W − W0 against these.
  const reps: PegrReplica[] = [];
  const W = f32(k.wPtr(), R * rows * dp);
  for (let r = 0; r < R; r++) {
    const rep = replicaView(prep, r);
    rep.W0 = Float64Array.from(rep.W0, Math.fround);
    copyPadded(W.subarray(r * rows * dp), rep.W0, rows, d, dp);
    hyper.set([prep.lr[r], prep.sigmaP[r], prep.lambda[r], 0], 4 * r);
    reps.push(rep);
  }
  const diverged = () => f64(kernel().divergedPtr(), R);
  const reported = new Uint8Array(R);

  const clock = new StepClock(spec.steps);
  if (state) restorePegrState(state);

  /** Checkpoint: W [R × 2m × d], diverged [R] (docs/checkpoints.md). */
  function exportPegrState(): SessionState {
    const W = unpadRows(f32(kernel().wPtr(), R * rows * dp), R * rows, d, dp);
    return newSessionState(spec, "wasm", clock.step, clock.elapsedMs, {
      W,
      diverged: diverged().slice(),
    });
  }

  function restorePegrState(st: SessionState): void {
    checkSessionState(st, spec);
    padRows(
      f32(kernel().wPtr(), R * rows * dp),
      stateArray(st, "W", R * rows * d),
      R * rows,
      d,
      dp,
    );
    diverged().set(stateArray(st, "diverged", R));
    diverged().forEach((at, r) => reported[r] = at >= 0 ? 1 : 0);
    clock.restore(st.step, st.wallMs);
  }

  /** Replica r's weights as float64, unpadded. */
  function weightsOf(r: number): Float64Array {
    const w = f32(kernel().wPtr() + r * rows * dp * 4, rows * dp);
    const out = new Float64Array(rows * d);
    for (let q = 0; q < rows; q++) {
      for (let c = 0; c < d; c++) out[q * d + c] = w[q * dp + c];
    }
    return out;
  }

  function snapshot(at: number): Snapshot {
    const metrics: Record<string, Float32Array> = {};
    for (const name of METRIC_NAMES) metrics[name] = new Float32Array(R).fill(NaN);
    const div = diverged();
    for (let r = 0; r < R; r++) {
      if (div[r] >= 0) continue;
      const values = pegrMetrics(prep, reps[r], weightsOf(r), at, kernel().testAccuracy(r));
      for (const name of METRIC_NAMES) metrics[name][r] = values[name];
    }
    return { step: at, wallMs: 0, metrics };
  }

  function advanceNow(target: number): AdvanceResult {
    return clock.advance(target, () => snapshot(0), (target, result) => {
      while (clock.step < target) {
        const step = clock.step;
        const next = Math.min(target, nextSnapshotStep(step, spec.every, spec.steps));
        const end = Math.min(next, step + callSteps);
        kernel().advance(step, end - step);
        clock.step = end;
        if (isSnapshotStep(end, spec.every, spec.steps)) result.snapshots.push(snapshot(end));
      }
      result.events.push(...newDivergences(diverged(), reported));
    });
  }

  return {
    backend: "wasm",
    adapter: wasmAdapterOf(instance),
    get step() {
      return clock.step;
    },
    advance(target: number, options?: AdvanceOptions): Promise<AdvanceResult> {
      // A snapshot here costs an m×d pass per replica in JS: its object is not the cost, so
      // columns are made from the snapshots.
      return settled(() => inAskedForm(advanceNow(target), options, R));
    },
    exportState() {
      return settled(exportPegrState);
    },
    dispose() {
      exports = null;
    },
  };
}
