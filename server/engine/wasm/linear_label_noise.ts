/**
 * KernelSession for `linear-label-noise` on the wasm kernel (kernels-as/linear_label_noise.ts).
 * This side copies the prepared float32 data in once (padding rows to whole f32x4 vectors and
 * transposing W(0) to the kernel's neuron-minor layout), splits each advance() at the metric
 * buffer's capacity, and turns what the kernel wrote into snapshots, divergence events and
 * the per-neuron frame. Frames at fixed steps and the lazy-escape event come from
 * wrapLinearSession, as for every backend.
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
  type LinearPrepared,
  NEURON_FRAME,
  prepareLinearLabelNoise,
} from "../../experiments/linear_label_noise_setup.ts";
import { LINEAR_METRIC_NAMES } from "../../experiments/linear_label_noise_reference.ts";
import { isFrameStep, wrapLinearSession } from "../../experiments/linear_label_noise_session.ts";
import { metricBufferSnapshot, newDivergences } from "../session_results.ts";
import { wasmAdapterOf } from "./builds.ts";
import { nextSnapshotStep, StepClock } from "../snapshots.ts";
import { ColumnBuilder } from "../snapshot_columns.ts";
import { metricBufferAdvance } from "./metric_buffer_advance.ts";
import { stepsPerCall } from "./call_length.ts";
import {
  checkSessionState,
  newSessionState,
  padRows,
  stateArray,
  unpadRows,
} from "../session_state.ts";

/** The exports of build/wasm/linear_label_noise.wasm (pointers are byte offsets). */
export interface LinearKernelExports {
  memory: WebAssembly.Memory;
  setup(
    m: number,
    d: number,
    n: number,
    nTest: number,
    replicas: number,
    dataSets: number,
    initSets: number,
    algo: number,
    online: number,
    gaussian: number,
    seed: number,
    period: number,
    gdFrom: number,
  ): void;
  setFirstReplica(first: number): void;
  paddedNeurons(): number;
  paddedDim(): number;
  xPtr(): number;
  yPtr(): number;
  xTestPtr(): number;
  yTestPtr(): number;
  thetaStarPtr(): number;
  w0Ptr(): number;
  a0Ptr(): number;
  hyperPtr(): number;
  divergedPtr(): number;
  wPtr(): number;
  aPtr(): number;
  sPtr(): number;
  scPtr(): number;
  alloc(bytes: number): number;
  resetState(): void;
  metricsNow(out: number): void;
  advance(from: number, count: number, every: number, total: number, out: number): number;
  writeFrame(out: number): void;
}

/** Metric read-back buffer, in floats: bounds the snapshots one kernel call may produce. */
const METRIC_BUFFER_FLOATS = 1 << 20;

/** Copies rows of `width` floats into rows of `paddedWidth` (the rest stays 0). */
function copyRows(dst: Float32Array, src: Float32Array, width: number, paddedWidth: number) {
  const rows = src.length / width;
  for (let row = 0; row < rows; row++) {
    dst.set(src.subarray(row * width, row * width + width), row * paddedWidth);
  }
}

function loadKernelData(k: LinearKernelExports, prep: LinearPrepared): void {
  const { m, d, n, nTest, replicas: R } = prep;
  const dataSets = prep.dataPerReplica ? R : 1;
  const initSets = prep.initPerReplica ? R : 1;
  const mp = k.paddedNeurons(), dp = k.paddedDim();
  const f32 = (ptr: number, length: number) => new Float32Array(k.memory.buffer, ptr, length);
  copyRows(f32(k.xPtr(), dataSets * n * dp), prep.X, d, dp);
  f32(k.yPtr(), dataSets * n).set(prep.y);
  copyRows(f32(k.xTestPtr(), dataSets * nTest * dp), prep.Xtest, d, dp);
  f32(k.yTestPtr(), dataSets * nTest).set(prep.ytest);
  copyRows(f32(k.thetaStarPtr(), dataSets * dp), prep.thetaStar, d, dp);
  // W(0) is [set][m][d] in the prepared data and [set][d][mp] in the kernel.
  const w0 = f32(k.w0Ptr(), initSets * d * mp);
  for (let s = 0; s < initSets; s++) {
    for (let i = 0; i < m; i++) {
      for (let c = 0; c < d; c++) w0[(s * d + c) * mp + i] = prep.W0[(s * m + i) * d + c];
    }
  }
  copyRows(f32(k.a0Ptr(), R * mp), prep.A0, m, mp);
  const hyper = f32(k.hyperPtr(), 4 * R);
  for (let r = 0; r < R; r++) hyper.set([prep.lr[r], prep.sigma[r], prep.chainAmp[r], 0], 4 * r);
}

export function openLinearLabelNoiseSession(
  spec: RunSpec,
  instance: WebAssembly.Instance,
  state?: SessionState,
): KernelSession {
  const prep = prepareLinearLabelNoise(spec);
  const k = instance.exports as unknown as LinearKernelExports;
  const R = prep.replicas;
  const M = LINEAR_METRIC_NAMES.length;
  k.setup(
    prep.m,
    prep.d,
    prep.n,
    prep.nTest,
    R,
    prep.dataPerReplica ? R : 1,
    prep.initPerReplica ? R : 1,
    prep.algoCode,
    prep.online ? 1 : 0,
    prep.gaussianNoise ? 1 : 0,
    prep.seed >>> 0,
    prep.period,
    prep.gdFrom,
  );
  k.setFirstReplica(prep.firstReplica >>> 0);
  const maxSnaps = Math.max(1, Math.floor(METRIC_BUFFER_FLOATS / (M * R)));
  // h = Wx and the rank-1 update of W (two m×d multiply-adds), O(m) for a and S.
  const callSteps = stepsPerCall(R, 4 * prep.m * prep.d + 12 * prep.m);
  const metricsPtr = k.alloc(maxSnaps * M * R * 4);
  const frameWidth = 3 * prep.m;
  const framePtr = prep.frameEvery > 0 ? k.alloc(R * frameWidth * 4) : 0;
  // Memory may have grown during the allocations above, so views are made after them.
  loadKernelData(k, prep);
  k.resetState();
  const f32 = (ptr: number, length: number) => new Float32Array(k.memory.buffer, ptr, length);
  const reported = new Uint8Array(R);

  const clock = new StepClock(spec.steps);
  let disposed = false;
  const { m, d } = prep;
  const mp = k.paddedNeurons();
  const diverged = () => new Float64Array(k.memory.buffer, k.divergedPtr(), R);

  /** Checkpoint: W [R × m × d] (the kernel keeps [R][d][mp]), a, S, S_comp [R × m]. */
  function exportLinearState(): SessionState {
    const Wk = f32(k.wPtr(), R * d * mp);
    const W = new Float32Array(R * m * d);
    for (let r = 0; r < R; r++) {
      for (let i = 0; i < m; i++) {
        for (let c = 0; c < d; c++) W[(r * m + i) * d + c] = Wk[(r * d + c) * mp + i];
      }
    }
    return newSessionState(spec, "wasm", clock.step, clock.elapsedMs, {
      W,
      a: unpadRows(f32(k.aPtr(), R * mp), R, m, mp),
      S: unpadRows(f32(k.sPtr(), R * mp), R, m, mp),
      S_comp: unpadRows(f32(k.scPtr(), R * mp), R, m, mp),
      diverged: diverged().slice(),
    });
  }

  function restoreLinearState(st: SessionState): void {
    checkSessionState(st, spec);
    const W = stateArray(st, "W", R * m * d);
    const Wk = f32(k.wPtr(), R * d * mp);
    for (let r = 0; r < R; r++) {
      for (let i = 0; i < m; i++) {
        for (let c = 0; c < d; c++) Wk[(r * d + c) * mp + i] = W[(r * m + i) * d + c];
      }
    }
    padRows(f32(k.aPtr(), R * mp), stateArray(st, "a", R * m), R, m, mp);
    padRows(f32(k.sPtr(), R * mp), stateArray(st, "S", R * m), R, m, mp);
    padRows(f32(k.scPtr(), R * mp), stateArray(st, "S_comp", R * m), R, m, mp);
    diverged().set(stateArray(st, "diverged", R));
    diverged().forEach((at, r) => reported[r] = at >= 0 ? 1 : 0);
    clock.restore(st.step, st.wallMs);
  }
  if (state) restoreLinearState(state);

  function readSnapshot(at: number, index: number): Snapshot {
    return metricBufferSnapshot(k.memory.buffer, metricsPtr, index, LINEAR_METRIC_NAMES, R, at);
  }

  /** The kernel's metric buffer, `count` snapshots of it, as int32 bits (see ColumnBuilder). */
  function metricBits(count: number): Int32Array {
    return new Int32Array(k.memory.buffer, metricsPtr, count * M * R);
  }

  /** One kernel call to `end`; its snapshots pushed to `out`, or appended as rows to columns. */
  function runCall(end: number, out: Snapshot[] | ColumnBuilder): void {
    const count = k.advance(clock.step, end - clock.step, spec.every, spec.steps, metricsPtr);
    let at = clock.step;
    if (out instanceof ColumnBuilder) {
      const first = nextSnapshotStep(at, spec.every, spec.steps);
      out.appendMetricBuffer(metricBits(count), count, first, spec.every, spec.steps);
    } else {
      for (let index = 0; index < count; index++) {
        at = nextSnapshotStep(at, spec.every, spec.steps);
        out.push(readSnapshot(at, index));
      }
    }
    clock.step = end;
  }

  /** Steps to the clamped target; snapshots go to `out` (result.snapshots or columns). */
  function stepTo(target: number, result: AdvanceResult, out: Snapshot[] | ColumnBuilder) {
    while (clock.step < target) {
      const bufferEnd = (Math.floor(clock.step / spec.every) + maxSnaps) * spec.every;
      runCall(Math.min(target, bufferEnd, clock.step + callSteps), out);
    }
    result.events.push(
      ...newDivergences(new Float64Array(k.memory.buffer, k.divergedPtr(), R), reported),
    );
    // Frames cost an m×d pass: only at the steps the wrapper keeps.
    if (framePtr && isFrameStep(clock.step, spec, prep.frameEvery)) {
      k.writeFrame(framePtr);
      result.frames.push({
        step: clock.step,
        name: NEURON_FRAME,
        width: frameWidth,
        values: f32(framePtr, R * frameWidth).slice(),
      });
    }
  }

  const buffered = {
    clock,
    spec,
    names: LINEAR_METRIC_NAMES,
    metricsNow: () => k.metricsNow(metricsPtr),
    bits: metricBits,
    snapshot: () => readSnapshot(0, 0),
    stepTo,
  };
  const advanceNow = (target: number, options?: AdvanceOptions) =>
    metricBufferAdvance(buffered, target, options);

  const session: KernelSession = {
    backend: "wasm",
    adapter: wasmAdapterOf(instance),
    get step() {
      return clock.step;
    },
    advance(target: number, options?: AdvanceOptions): Promise<AdvanceResult> {
      if (disposed) return Promise.reject(new Error("session disposed"));
      return Promise.resolve(advanceNow(target, options));
    },
    exportState() {
      if (disposed) return Promise.reject(new Error("session disposed"));
      return Promise.resolve(exportLinearState());
    },
    dispose() {
      disposed = true;
    },
  };
  return wrapLinearSession(session, prep, spec, state);
}
