/**
 * WebGPU session for Shape Matters: kernels-wgsl/shape_matters.wgsl advances every replica
 * (one workgroup each) by many steps per dispatch; metrics are computed on the device at
 * snapshot steps and read back, with divergences and the state, once per advance() call.
 *
 * How a call is cut into dispatches: at every snapshot step (so a snapshot is always the
 * state after a dispatch's last update), at every learning-rate milestone (so the schedule
 * factor is a per-dispatch uniform), and after at most `maxStepsPerDispatch` steps (GPU
 * watchdogs kill long dispatches). Each dispatch reads its parameters from its own 256-byte
 * slot of one uniform buffer (dynamic offset), so all of them go in one submission.
 * On llvmpipe a fourth cut keeps each dispatch under its shared loop-iteration limit.
 *
 * Checkpoints (docs/checkpoints.md): v [R × d] and the divergence steps. Every round reads
 * the state back already (for the frame), so exporting needs no extra readback.
 */
import {
  prepareShapeMatters,
  SHAPE_MATTERS_METRICS,
  type ShapeMattersPrepared,
} from "../../experiments/shape_matters.ts";
import { scheduleFactor, type ScheduleValue } from "../../experiments/schema.ts";
import type { KernelSession, RunSpec, SessionState } from "../../experiments/types.ts";
import { checkSessionState, divergedArray, newSessionState, stateArray } from "../session_state.ts";
import { checked, getGpu, type Gpu, isLlvmpipe, LLVMPIPE_LOOP_LIMIT } from "./device.ts";
import {
  dispatchSequence,
  MAX_DISPATCHES_PER_ROUND,
  planDispatches,
  type PlannedDispatch,
  snapshotsIn,
  snapshotSlots,
  splitRounds,
} from "./dispatch_plan.ts";
import {
  bufferMaker,
  dispatchEach,
  encodeParams,
  paramsAndStorageLayout,
  paramStride as paramStrideOf,
  restoredStatusWords,
  roundDivergences,
  roundedAdvance,
  roundSnapshots,
  serialisedGpuSession,
  submitRound,
  writeBufferAt,
} from "./rounds.ts";
import { assemble, computePipeline, constHeader } from "./wgsl.ts";

export interface ShapeMattersGpuOptions {
  /** Upper bound on updates per dispatch (default: from a work budget, see stepsPerDispatch). */
  maxStepsPerDispatch?: number;
  /** Threads per workgroup (one workgroup per replica). */
  workgroupSize?: number;
  /** Keep v, r, z in storage buffers even when they fit in workgroup memory (for tests). */
  storageState?: boolean;
  /** Cap dispatches by llvmpipe's loop limit (default true; tests turn it off to see the check). */
  respectLoopLimit?: boolean;
}

const METRIC_NAMES = SHAPE_MATTERS_METRICS.map((m) => m.name);
const PARAMS_BYTES = 48; // struct Params in the WGSL (40 bytes), rounded up to 16
/**
 * Multiply-adds one dispatch may do across all replicas (≈2·n·d per replica-step): about
 * 5 ms on an H100 (where 1-step dispatches cost 25% in launches at 65536 replicas), so still
 * well under a second on GPUs 50× slower, below the watchdogs that kill long dispatches.
 */
const WORK_PER_DISPATCH = 2 ** 32;
const MAX_STEPS_PER_DISPATCH = 4096;
/** Share of llvmpipe's loop limit a dispatch may use; the margin covers compiler loops. */
const LLVMPIPE_LOOP_BUDGET = Math.floor(0.9 * LLVMPIPE_LOOP_LIMIT);

/** Updates per dispatch: long enough to amortise a launch, short enough for watchdogs. */
export function stepsPerDispatch(replicas: number, n: number, d: number): number {
  const perStep = replicas * (2 * n * d + 4 * d + 2 * n);
  return Math.max(1, Math.min(MAX_STEPS_PER_DISPATCH, Math.floor(WORK_PER_DISPATCH / perStep)));
}

/**
 * Loop iterations one invocation of the kernel runs (the SIMD vector holding thread 0 runs
 * the most): per update, and once per dispatch (loads, stores, metrics, canary).
 */
export function loopIterations(d: number, n: number, wg: number) {
  const rows = Math.ceil(n / wg), cols = Math.ceil(d / wg);
  const blocks = Math.ceil(Math.ceil(d / 4) / wg);
  return {
    perStep: 1 + rows * (d + 1) + blocks * 5 + cols * (n + 1),
    perDispatch: 2 * cols + rows * (d + 1) + cols + wg + 2,
  };
}

/** Most updates per dispatch that keep llvmpipe's shared loop counter in budget (0: none). */
export function llvmpipeStepLimit(d: number, n: number, wg: number): number {
  const { perStep, perDispatch } = loopIterations(d, n, wg);
  return Math.max(0, Math.floor((LLVMPIPE_LOOP_BUDGET - perDispatch) / perStep));
}

interface Dispatch extends PlannedDispatch {
  /** Learning-rate schedule factor of the dispatch's updates. */
  factor: number;
}

/**
 * Threads per workgroup: the power of two covering max(d, n) (so each phase is one pass),
 * between 32 and 256. On an H100 at paper size 128 beats 64 by 30% for few replicas (the
 * per-step latency) and ties for thousands. On llvmpipe the size hardly matters for speed,
 * but one update must fit its loop budget, which may need more threads.
 */
function chooseWorkgroupSize(gpu: Gpu, d: number, n: number, requested?: number): number {
  const limits = gpu.device.limits;
  const max = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (requested !== undefined) return Math.min(requested, max);
  let wg = 32;
  while (wg < Math.max(d, n) && wg < 256) wg *= 2;
  wg = Math.min(wg, max);
  if (!isLlvmpipe(gpu)) return wg;
  while (llvmpipeStepLimit(d, n, wg) < 1 && wg * 2 <= max) wg *= 2;
  if (llvmpipeStepLimit(d, n, wg) < 1) {
    throw new Error(
      `shape-matters with d=${d}, n=${n} does not fit llvmpipe's limit of 65535 loop ` +
        `iterations per shader invocation even with ${wg} threads; use a GPU adapter`,
    );
  }
  return wg;
}

function nextMilestone(schedule: ScheduleValue, step: number): number {
  for (const [at] of schedule) if (at > step) return at;
  return Infinity;
}

function layoutFor(device: GPUDevice) {
  return paramsAndStorageLayout(device, "shape-matters", PARAMS_BYTES, [
    "read-only-storage",
    "read-only-storage",
    "read-only-storage",
    "storage",
    "storage",
    "storage",
    "storage",
  ]);
}

/** Kernel constants for one run; identical runs share the compiled pipeline. */
function kernelConstants(prep: ShapeMattersPrepared, wg: number, gpu: Gpu, storage: boolean) {
  const { d, n } = prep;
  const needsZ = prep.algo === "gaussian" || prep.algo === "langevin";
  const wgBytes = 4 * (d + n + (needsZ ? d : 1)) + 16 * wg + 32;
  const wgState = !storage && wgBytes <= gpu.device.limits.maxComputeWorkgroupStorageSize;
  return {
    D: d,
    N: n,
    WG: wg,
    ALGO: prep.algoCode,
    RADEMACHER: prep.rademacherNoise,
    DATA_PER_REPLICA: prep.dataPerReplica,
    WG_STATE: wgState,
    SH_D: wgState ? d : 1,
    SH_N: wgState ? n : 1,
    SH_Z: wgState && needsZ ? d : 1,
  };
}

export async function openShapeMattersGpu(
  spec: RunSpec,
  options: ShapeMattersGpuOptions = {},
  state?: SessionState,
): Promise<KernelSession> {
  if (state) checkSessionState(state, spec);
  const startMs = performance.now();
  const prep = prepareShapeMatters(spec);
  const gpu = await getGpu();
  const { device } = gpu;
  const { d, n } = prep;
  const R = spec.replicas;
  const sets = prep.dataPerReplica ? R : 1;
  const wg = chooseWorkgroupSize(gpu, d, n, options.workgroupSize);
  const consts = kernelConstants(prep, wg, gpu, options.storageState ?? false);
  let maxSteps = Math.max(1, options.maxStepsPerDispatch ?? stepsPerDispatch(R, n, d));
  if (isLlvmpipe(gpu) && options.respectLoopLimit !== false) {
    maxSteps = Math.max(1, Math.min(maxSteps, llvmpipeStepLimit(d, n, wg)));
  }

  const limits = device.limits;
  // More than 65535 replicas need a second grid dimension; split them evenly.
  const groupsY = Math.ceil(R / limits.maxComputeWorkgroupsPerDimension);
  const groupsX = Math.ceil(R / groupsY);
  const paramStride = paramStrideOf(device);
  const slots = snapshotSlots(spec, 16 * R);

  const sizes = {
    X: 4 * sets * n * d,
    labels: 4 * (d + sets * n),
    hyper: 16 * R,
    state: 4 * R * d,
    status: 16 * R,
    metrics: 16 * R * slots,
    scratch: consts.WG_STATE ? 16 : 4 * R * (n + d),
  };
  const readOff = { status: sizes.metrics, state: sizes.metrics + sizes.status };
  const readBytes = sizes.metrics + sizes.status + sizes.state;
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  for (const [name, bytes] of [...Object.entries(sizes), ["readback", readBytes] as const]) {
    if (bytes > (name === "readback" ? limits.maxBufferSize : maxBinding)) {
      throw new Error(
        `shape-matters on WebGPU: the ${name} buffer needs ${bytes} bytes, over this device's ` +
          `limit (${gpu.adapterName}); use fewer replicas or shared data`,
      );
    }
  }

  const code = await assemble(constHeader(consts), [
    "float.wgsl",
    "canary.wgsl",
    "philox.wgsl",
    "shape_matters.wgsl",
  ]);
  const layout = layoutFor(device);
  const pipeline = await computePipeline(gpu, "shape_matters", code, "advance", layout.pipe);

  const buffers: GPUBuffer[] = [];
  const { bindGroup, paramsBuf, metricsBuf, statusBuf, stateBuf, readBuf } = await checked(
    gpu,
    "allocating shape-matters buffers",
    () => {
      const S = GPUBufferUsage.STORAGE, DST = GPUBufferUsage.COPY_DST;
      const SRC = GPUBufferUsage.COPY_SRC;
      const make = bufferMaker(device, buffers);
      const labels = new Float32Array(d + sets * n);
      labels.set(prep.vStarSq, 0);
      labels.set(prep.y, d);
      const hyper = new Float32Array(4 * R);
      for (let r = 0; r < R; r++) {
        hyper.set([prep.lr[r], prep.delta[r], prep.sigma[r], prep.lambda[r]], 4 * r);
      }
      const xBuf = make("X", sizes.X, S | DST, prep.X);
      const labelsBuf = make("labels", sizes.labels, S | DST, labels);
      const hyperBuf = make("hyper", sizes.hyper, S | DST, hyper);
      const stateBuf = make(
        "state",
        sizes.state,
        S | DST | SRC,
        new Float32Array(R * d).fill(prep.v0),
      );
      const statusBuf = make("status", sizes.status, S | DST | SRC); // zero: nobody diverged
      const metricsBuf = make("metrics", sizes.metrics, S | SRC);
      const scratchBuf = make("scratch", sizes.scratch, S);
      const paramsBuf = make(
        "params",
        paramStride * MAX_DISPATCHES_PER_ROUND,
        GPUBufferUsage.UNIFORM | DST,
      );
      const readBuf = make("readback", readBytes, GPUBufferUsage.MAP_READ | DST);
      const bindGroup = device.createBindGroup({
        layout: layout.group,
        entries: [
          { binding: 0, resource: { buffer: paramsBuf, size: PARAMS_BYTES } },
          ...[xBuf, labelsBuf, hyperBuf, stateBuf, statusBuf, metricsBuf, scratchBuf].map(
            (buffer, i) => ({ binding: i + 1, resource: { buffer } }),
          ),
        ],
      });
      return { bindGroup, paramsBuf, metricsBuf, statusBuf, stateBuf, readBuf };
    },
  );

  const nextSeq = dispatchSequence();
  /** Absolute step at which each replica diverged (the event's step), or -1. */
  const divergedAt = new Float64Array(R).fill(-1);
  let lastState = new Float32Array(R * d).fill(prep.v0);

  /** The dispatches taking the run from `from` to `target`, in order. */
  function plan(from: number, target: number, withInitial: boolean): Dispatch[] {
    return planDispatches(spec, from, target, {
      nextSeq,
      initial: withInitial ? { factor: 1 } : undefined,
      cutAfter: (s) => Math.min(s + maxSteps, nextMilestone(prep.schedule, s)),
      fields: (s) => ({ factor: scheduleFactor(prep.schedule, s) }),
    });
  }

  /** Submits one round and reads back metrics, status and state with one mapAsync. */
  function runRound(round: Dispatch[]) {
    const metricsBytes = 16 * R * snapshotsIn(round);
    const params = encodeParams(round, paramStride, PARAMS_BYTES, (u, f, dsp) => {
      u[0] = dsp.start % 4294967296;
      u[1] = dsp.count;
      u[2] = dsp.seq;
      u[3] = dsp.slot;
      f[4] = dsp.factor;
      u[5] = prep.seed;
      u[6] = R;
      u[7] = groupsX;
      u[8] = 2; // canary trip count
      u[9] = prep.firstReplica;
    });
    return submitRound(
      gpu,
      "shape-matters advance",
      { paramsBuf, readBuf },
      params,
      readBytes,
      (encoder) => {
        const pass = encoder.beginComputePass();
        dispatchEach(pass, pipeline, bindGroup, round.length, paramStride, groupsX, groupsY);
        pass.end();
        if (metricsBytes) encoder.copyBufferToBuffer(metricsBuf, 0, readBuf, 0, metricsBytes);
        encoder.copyBufferToBuffer(statusBuf, 0, readBuf, readOff.status, sizes.status);
        encoder.copyBufferToBuffer(stateBuf, 0, readBuf, readOff.state, sizes.state);
      },
      (mapped) => ({
        metrics: new Float32Array(mapped.slice(0, metricsBytes)),
        status: new Uint32Array(mapped.slice(readOff.status, readOff.status + sizes.status)),
        state: new Float32Array(mapped.slice(readOff.state, readOff.state + sizes.state)),
      }),
    );
  }

  const clock = roundedAdvance(spec.steps, startMs, {
    rounds: (from, to, initial) => splitRounds(plan(from, to, initial), slots),
    async onRound(round, result) {
      const data = await runRound(round);
      result.events.push(...roundDivergences(gpu, "shape-matters", round, data.status, divergedAt));
      result.snapshots.push(
        ...roundSnapshots(
          round,
          METRIC_NAMES,
          divergedAt,
          (slot, r, m) => data.metrics[(slot * R + r) * 4 + m],
        ),
      );
      lastState = data.state;
    },
    finish(result, step) {
      const values = new Float32Array(R * d);
      for (let i = 0; i < values.length; i++) values[i] = lastState[i] * lastState[i];
      result.frames.push({ step, name: "v_sq", values, width: d });
    },
  });

  if (state) {
    lastState = Float32Array.from(stateArray(state, "v", R * d));
    divergedAt.set(stateArray(state, "diverged", R));
    await checked(gpu, "restoring shape-matters state", () => {
      writeBufferAt(gpu, stateBuf, 0, lastState);
      writeBufferAt(gpu, statusBuf, 0, restoredStatusWords(divergedAt));
    });
    clock.restore(state.step, state.wallMs);
  }

  /** v is the state the last round read back (or the one restored). */
  function exportState(): Promise<SessionState> {
    return Promise.resolve(
      newSessionState(spec, "webgpu", clock.stepOf(), clock.elapsedMs(), {
        v: lastState.slice(),
        diverged: divergedArray(divergedAt),
      }),
    );
  }

  return serialisedGpuSession(
    gpu,
    "shape-matters",
    clock.stepOf,
    clock.advanceTo,
    buffers,
    exportState,
  );
}
