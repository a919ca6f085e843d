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
 */
import {
  prepareShapeMatters,
  SHAPE_MATTERS_METRICS,
  type ShapeMattersPrepared,
} from "../../experiments/shape_matters.ts";
import { scheduleFactor, type ScheduleValue } from "../../experiments/schema.ts";
import type {
  AdvanceResult,
  KernelSession,
  RunEvent,
  RunSpec,
  Snapshot,
} from "../../experiments/types.ts";
import { isSnapshotStep, nextSnapshotStep, stampWallTimes } from "../snapshots.ts";
import {
  checked,
  getGpu,
  type Gpu,
  isLlvmpipe,
  LLVMPIPE_LOOP_LIMIT,
  unlessLost,
} from "./device.ts";
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
const PARAMS_BYTES = 48; // struct Params in the WGSL (36 bytes), rounded up to 16
const NO_SNAP = 0xFFFFFFFF;
/** Metrics read back per round; more snapshots than fit in one call take several rounds. */
const METRICS_BYTES_CAP = 16 << 20;
const MAX_SLOTS = 4096;
const MAX_DISPATCHES_PER_ROUND = 1024;
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

interface Dispatch {
  /** Absolute step before the dispatch's first update. */
  start: number;
  count: number;
  seq: number;
  /** Snapshot step (start + count) and its slot, if the dispatch ends on one. */
  slot: number;
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

const layouts = new WeakMap<GPUDevice, { group: GPUBindGroupLayout; pipe: GPUPipelineLayout }>();

function layoutFor(device: GPUDevice) {
  let l = layouts.get(device);
  if (!l) {
    const storage = (type: GPUBufferBindingType) => ({
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    const group = device.createBindGroupLayout({
      label: "shape-matters",
      entries: [
        {
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: PARAMS_BYTES },
        },
        { binding: 1, ...storage("read-only-storage") },
        { binding: 2, ...storage("read-only-storage") },
        { binding: 3, ...storage("read-only-storage") },
        { binding: 4, ...storage("storage") },
        { binding: 5, ...storage("storage") },
        { binding: 6, ...storage("storage") },
        { binding: 7, ...storage("storage") },
      ],
    });
    l = { group, pipe: device.createPipelineLayout({ bindGroupLayouts: [group] }) };
    layouts.set(device, l);
  }
  return l;
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
): Promise<KernelSession> {
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
  const paramStride = Math.max(256, limits.minUniformBufferOffsetAlignment);
  const totalSnapshots = Math.floor(spec.steps / spec.every) + 2;
  const slots = Math.max(
    1,
    Math.min(MAX_SLOTS, totalSnapshots, Math.floor(METRICS_BYTES_CAP / (16 * R))),
  );

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

  const code = await assemble(constHeader(consts), ["philox.wgsl", "shape_matters.wgsl"]);
  const layout = layoutFor(device);
  const pipeline = await computePipeline(gpu, "shape_matters", code, "advance", layout.pipe);

  const buffers: GPUBuffer[] = [];
  const { bindGroup, paramsBuf, metricsBuf, statusBuf, stateBuf, readBuf } = await checked(
    gpu,
    "allocating shape-matters buffers",
    () => {
      const S = GPUBufferUsage.STORAGE, DST = GPUBufferUsage.COPY_DST;
      const SRC = GPUBufferUsage.COPY_SRC;
      const make = (label: string, size: number, usage: number, data?: ArrayBufferView) => {
        const buffer = device.createBuffer({ label, size: Math.max(16, size), usage });
        buffers.push(buffer);
        if (data) {
          device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
        }
        return buffer;
      };
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
      const statusBuf = make("status", sizes.status, S | SRC); // zero: nobody diverged
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

  let step = 0;
  let reportedInitial = false;
  let seq = 0;
  let disposed = false;
  /** Absolute step at which each replica diverged (the event's step), or -1. */
  const divergedAt = new Float64Array(R).fill(-1);
  let lastState = new Float32Array(R * d).fill(prep.v0);

  /** The dispatches taking the run from `from` to `target`, in order. */
  function plan(from: number, target: number, withInitial: boolean): Dispatch[] {
    const out: Dispatch[] = [];
    const nextSeq = () => (seq = seq >= 0xFFFFFFFE ? 1 : seq + 1);
    if (withInitial) out.push({ start: from, count: 0, seq: nextSeq(), slot: 0, factor: 1 });
    for (let s = from; s < target;) {
      const e = Math.min(
        target,
        s + maxSteps,
        nextSnapshotStep(s, spec.every, spec.steps),
        nextMilestone(prep.schedule, s),
      );
      const snap = isSnapshotStep(e, spec.every, spec.steps);
      out.push({
        start: s,
        count: e - s,
        seq: nextSeq(),
        slot: snap ? 0 : NO_SNAP,
        factor: scheduleFactor(prep.schedule, s),
      });
      s = e;
    }
    return out;
  }

  /** Cuts a plan into rounds that fit the params and metrics buffers; numbers the slots. */
  function rounds(dispatches: Dispatch[]): Dispatch[][] {
    const out: Dispatch[][] = [];
    let cur: Dispatch[] = [];
    let used = 0;
    for (const dsp of dispatches) {
      const snap = dsp.slot !== NO_SNAP;
      if (cur.length === MAX_DISPATCHES_PER_ROUND || (snap && used === slots)) {
        out.push(cur);
        cur = [];
        used = 0;
      }
      if (snap) dsp.slot = used++;
      cur.push(dsp);
    }
    if (cur.length) out.push(cur);
    return out;
  }

  function encodeParams(round: Dispatch[]): ArrayBuffer {
    const data = new ArrayBuffer(paramStride * round.length);
    round.forEach((dsp, i) => {
      const u = new Uint32Array(data, i * paramStride, PARAMS_BYTES / 4);
      const f = new Float32Array(data, i * paramStride, PARAMS_BYTES / 4);
      u[0] = dsp.start % 4294967296;
      u[1] = dsp.count;
      u[2] = dsp.seq;
      u[3] = dsp.slot;
      f[4] = dsp.factor;
      u[5] = prep.seed;
      u[6] = R;
      u[7] = groupsX;
      u[8] = 2; // canary trip count
    });
    return data;
  }

  /** Submits one round and reads back metrics, status and state with one mapAsync. */
  async function runRound(round: Dispatch[]) {
    const used = round.filter((dsp) => dsp.slot !== NO_SNAP).length;
    const metricsBytes = 16 * R * used;
    await checked(gpu, "shape-matters advance", () => {
      device.queue.writeBuffer(paramsBuf, 0, encodeParams(round));
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      round.forEach((_, i) => {
        pass.setBindGroup(0, bindGroup, [i * paramStride]);
        pass.dispatchWorkgroups(groupsX, groupsY);
      });
      pass.end();
      if (metricsBytes) encoder.copyBufferToBuffer(metricsBuf, 0, readBuf, 0, metricsBytes);
      encoder.copyBufferToBuffer(statusBuf, 0, readBuf, readOff.status, sizes.status);
      encoder.copyBufferToBuffer(stateBuf, 0, readBuf, readOff.state, sizes.state);
      device.queue.submit([encoder.finish()]);
    });
    await unlessLost(gpu, readBuf.mapAsync(GPUMapMode.READ, 0, readBytes));
    try {
      const mapped = readBuf.getMappedRange(0, readBytes);
      return {
        metrics: new Float32Array(mapped.slice(0, metricsBytes)),
        status: new Uint32Array(mapped.slice(readOff.status, readOff.status + sizes.status)),
        state: new Float32Array(mapped.slice(readOff.state, readOff.state + sizes.state)),
      };
    } finally {
      readBuf.unmap();
    }
  }

  /** Snapshots and divergence events of one round, from its readback. */
  function collect(round: Dispatch[], data: Awaited<ReturnType<typeof runRound>>) {
    const events: RunEvent[] = [];
    const startOf = new Map(round.map((dsp) => [dsp.seq, dsp.start]));
    for (let r = 0; r < R; r++) {
      if (startOf.has(data.status[4 * r + 2])) {
        throw new Error(
          `${gpu.adapterName} cut a shape-matters dispatch short (replica ${r}): its loop ` +
            `limit was hit, so the results would be wrong; open the session with a smaller ` +
            `maxStepsPerDispatch`,
        );
      }
      const at = startOf.get(data.status[4 * r]);
      if (divergedAt[r] < 0 && at !== undefined) {
        divergedAt[r] = at + data.status[4 * r + 1];
        events.push({ type: "replica_diverged", step: divergedAt[r], replica: r });
      }
    }
    const snapshots: Snapshot[] = [];
    for (const dsp of round) {
      if (dsp.slot === NO_SNAP) continue;
      const at = dsp.start + dsp.count;
      const metrics: Record<string, Float32Array> = {};
      METRIC_NAMES.forEach((name, m) => {
        const values = new Float32Array(R);
        for (let r = 0; r < R; r++) {
          const dead = divergedAt[r] >= 0 && divergedAt[r] <= at;
          values[r] = dead ? NaN : data.metrics[(dsp.slot * R + r) * 4 + m];
        }
        metrics[name] = values;
      });
      snapshots.push({ step: at, wallMs: 0, metrics });
    }
    return { events, snapshots };
  }

  async function advanceTo(target: number): Promise<AdvanceResult> {
    if (disposed) throw new Error("shape-matters WebGPU session used after dispose()");
    const t0 = performance.now() - startMs;
    const from = step;
    const result: AdvanceResult = { snapshots: [], events: [], frames: [] };
    const to = Number.isNaN(target)
      ? step
      : Math.max(step, Math.min(Math.floor(target), spec.steps));
    for (const round of rounds(plan(step, to, !reportedInitial))) {
      const data = await runRound(round);
      const { events, snapshots } = collect(round, data);
      result.events.push(...events);
      result.snapshots.push(...snapshots);
      lastState = data.state;
      step = round[round.length - 1].start + round[round.length - 1].count;
    }
    reportedInitial = true;
    step = to;
    result.events.sort((a, b) =>
      a.step - b.step || (a as { replica: number }).replica - (b as { replica: number }).replica
    );
    const values = new Float32Array(R * d);
    for (let i = 0; i < values.length; i++) values[i] = lastState[i] * lastState[i];
    result.frames.push({ step, name: "v_sq", values, width: d });
    stampWallTimes(result.snapshots, from, step, t0, performance.now() - startMs);
    return result;
  }

  // Calls are serialised: a second advance() waits for the first instead of interleaving.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    backend: "webgpu",
    adapter: gpu.adapterName,
    get step() {
      return step;
    },
    advance(target: number) {
      const next = queue.then(() => advanceTo(target));
      queue = next.catch(() => {});
      return next;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const b of buffers) b.destroy();
    },
  };
}
