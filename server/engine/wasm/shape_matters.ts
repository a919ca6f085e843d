/**
 * KernelSession for Shape Matters on the wasm kernel (kernels-as/shape_matters.ts). The
 * kernel owns the memory layout; this side copies the prepared data in once, splits each
 * advance() at learning-rate milestones (the kernel runs a constant factor per call) and at
 * the metric buffer's capacity, and turns what the kernel wrote into snapshots, divergence
 * events and the v⊙v frame with the reference session's semantics (server/engine/backend.ts).
 */
import type {
  AdvanceOptions,
  AdvanceResult,
  KernelSession,
  RunSpec,
  SessionState,
  Snapshot,
} from "../../experiments/types.ts";
import { prepareShapeMatters, SHAPE_MATTERS_METRICS } from "../../experiments/shape_matters.ts";
import { scheduleFactor } from "../../experiments/schema.ts";
import { metricBufferSnapshot, newDivergences, settled } from "../session_results.ts";
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

/** The exports of build/wasm/shape_matters.wasm (pointers are byte offsets into memory). */
export interface ShapeMattersExports {
  memory: WebAssembly.Memory;
  setup(
    d: number,
    n: number,
    replicas: number,
    sets: number,
    algo: number,
    rademacher: number,
    seed: number,
  ): void;
  setFirstReplica(first: number): void;
  paddedDim(): number;
  xPtr(): number;
  yPtr(): number;
  vStarSqPtr(): number;
  vPtr(): number;
  hyperPtr(): number;
  divergedPtr(): number;
  alloc(bytes: number): number;
  prepareMetrics(): void;
  resetState(tau: number): void;
  setSegment(factor: number): void;
  metricsNow(out: number): void;
  advance(from: number, count: number, every: number, total: number, out: number): number;
  writeVSquared(out: number): void;
}

const METRIC_NAMES = SHAPE_MATTERS_METRICS.map((m) => m.name);
/** Metric read-back buffer, in floats: bounds the snapshots one kernel call may produce. */
const METRIC_BUFFER_FLOATS = 1 << 20;
/** Steps per kernel call at most (the kernel counts steps of a call in an i32). */
const MAX_CALL_STEPS = 1 << 30;

/** asc's stub allocator serves blocks of at most 1 GiB; wasm32 memory ends at 4 GiB. */
const MAX_BLOCK_BYTES = 2 ** 30;
const MAX_TOTAL_BYTES = 3.5 * 2 ** 30;

/** Refuses runs that cannot fit the kernel's 32-bit memory, before allocating anything. */
function checkMemory(d: number, n: number, R: number, sets: number, metricFloats: number) {
  const dp = Math.ceil(d / 4) * 4;
  const blocks = [sets * n * dp * 4, R * dp * 4, R * d * 4, metricFloats * 4];
  const total = blocks.reduce((a, b) => a + b, 0) + sets * n * 4 + R * 56;
  if (Math.max(...blocks) > MAX_BLOCK_BYTES || total > MAX_TOTAL_BYTES) {
    throw new Error(
      `shape-matters with ${R} replicas, d=${d}, n=${n} needs ${
        (total / 2 ** 30).toFixed(1)
      } GiB of wasm memory (at most 1 GiB per array, 3.5 GiB in all): use fewer replicas, ` +
        `data=shared, or the webgpu backend`,
    );
  }
}

export function openShapeMattersSession(
  spec: RunSpec,
  instance: WebAssembly.Instance,
  state?: SessionState,
): KernelSession {
  const M = METRIC_NAMES.length;
  const R = spec.replicas;
  const maxSnaps = Math.max(1, Math.floor(METRIC_BUFFER_FLOATS / (M * R)));
  const sets = spec.params.data === "per-replica" ? R : 1;
  // Before prepare(), which would already build the data in JS memory.
  checkMemory(spec.params.d as number, spec.params.n as number, R, sets, maxSnaps * M * R);
  const prep = prepareShapeMatters(spec);
  const { d, n } = prep;
  let exports: ShapeMattersExports | null = instance.exports as unknown as ShapeMattersExports;
  /** The kernel; dispose() drops it so the instance's memory can be collected. */
  const kernel = (): ShapeMattersExports => {
    if (!exports) throw new Error("the wasm shape-matters session was disposed");
    return exports;
  };
  const k = kernel();
  k.setup(d, n, R, sets, prep.algoCode, prep.rademacherNoise ? 1 : 0, prep.seed >>> 0);
  k.setFirstReplica(prep.firstReplica >>> 0);
  const dp = k.paddedDim();
  const metricsPtr = k.alloc(maxSnaps * M * R * 4);
  const framePtr = k.alloc(R * d * 4);
  // Views are made per use: they would detach if the memory grew after they were taken.
  const f32 = (ptr: number, length: number) =>
    new Float32Array(kernel().memory.buffer, ptr, length);
  const X = f32(k.xPtr(), sets * n * dp);
  for (let row = 0; row < sets * n; row++) {
    X.set(prep.X.subarray(row * d, row * d + d), row * dp);
  }
  f32(k.yPtr(), sets * n).set(prep.y);
  f32(k.vStarSqPtr(), d).set(prep.vStarSq);
  const hyper = new Float64Array(k.memory.buffer, k.hyperPtr(), 4 * R);
  for (let r = 0; r < R; r++) {
    hyper.set([prep.lr[r], prep.delta[r], prep.sigma[r], prep.lambda[r]], 4 * r);
  }
  k.prepareMetrics();
  k.resetState(prep.v0);
  const diverged = () => new Float64Array(kernel().memory.buffer, kernel().divergedPtr(), R);
  const reported = new Uint8Array(R);
  const milestones = prep.schedule.map(([at]) => at);
  // Residuals X·(v⊙v) and gradient Xᵀc: two n×d multiply-adds; O(d) for the update.
  const callSteps = Math.min(MAX_CALL_STEPS, stepsPerCall(R, 4 * n * d + 6 * d));

  const clock = new StepClock(spec.steps);
  let segmentFactor = NaN;
  if (state) restoreShapeMattersState(state);

  /** Checkpoint: v [R × d], diverged [R] (docs/checkpoints.md). */
  function exportShapeMattersState(): SessionState {
    const v = unpadRows(f32(kernel().vPtr(), R * dp), R, d, dp);
    return newSessionState(spec, "wasm", clock.step, clock.elapsedMs, {
      v,
      diverged: diverged().slice(),
    });
  }

  function restoreShapeMattersState(st: SessionState): void {
    checkSessionState(st, spec);
    padRows(f32(kernel().vPtr(), R * dp), stateArray(st, "v", R * d), R, d, dp);
    diverged().set(stateArray(st, "diverged", R));
    // Divergences up to a checkpoint were reported before it was written.
    diverged().forEach((at, r) => reported[r] = at >= 0 ? 1 : 0);
    clock.restore(st.step, st.wallMs);
  }

  function readSnapshot(at: number, index: number): Snapshot {
    return metricBufferSnapshot(kernel().memory.buffer, metricsPtr, index, METRIC_NAMES, R, at);
  }

  /** The kernel's metric buffer, `count` snapshots of it, as int32 bits (see ColumnBuilder). */
  function metricBits(count: number): Int32Array {
    return new Int32Array(kernel().memory.buffer, metricsPtr, count * M * R);
  }

  /**
   * One kernel call from `step` to `end` (no milestone inside, snapshots fit the buffer); its
   * snapshots pushed to `out`, or appended as rows to columns.
   */
  function runCall(end: number, out: Snapshot[] | ColumnBuilder): void {
    const factor = scheduleFactor(prep.schedule, clock.step);
    if (factor !== segmentFactor) {
      kernel().setSegment(factor);
      segmentFactor = factor;
    }
    const count = kernel().advance(
      clock.step,
      end - clock.step,
      spec.every,
      spec.steps,
      metricsPtr,
    );
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

  /** The last step one call may reach: next milestone, buffer capacity, call length. */
  function callEnd(target: number): number {
    const milestone = milestones.find((at) => at > clock.step) ?? Infinity;
    const bufferEnd = (Math.floor(clock.step / spec.every) + maxSnaps) * spec.every;
    return Math.min(target, milestone, bufferEnd, clock.step + callSteps);
  }

  /** Steps to the clamped target; snapshots go to `out` (result.snapshots or columns). */
  function stepTo(target: number, result: AdvanceResult, out: Snapshot[] | ColumnBuilder) {
    while (clock.step < target) runCall(callEnd(target), out);
    result.events.push(...newDivergences(diverged(), reported));
    kernel().writeVSquared(framePtr);
    result.frames.push({
      step: clock.step,
      name: "v_sq",
      width: d,
      values: f32(framePtr, R * d).slice(),
    });
  }

  const buffered = {
    clock,
    spec,
    names: METRIC_NAMES,
    metricsNow: () => kernel().metricsNow(metricsPtr),
    bits: metricBits,
    snapshot: () => readSnapshot(0, 0),
    stepTo,
  };
  const advanceNow = (target: number, options?: AdvanceOptions) =>
    metricBufferAdvance(buffered, target, options);

  return {
    backend: "wasm",
    adapter: wasmAdapterOf(instance),
    get step() {
      return clock.step;
    },
    advance(target: number, options?: AdvanceOptions): Promise<AdvanceResult> {
      // A kernel trap (or a disposed session) rejects the promise instead of throwing.
      return settled(() => advanceNow(target, options));
    },
    exportState() {
      return settled(exportShapeMattersState);
    },
    dispose() {
      exports = null;
    },
  };
}
