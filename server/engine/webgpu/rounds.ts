/**
 * One round of a WebGPU session: per-dispatch params in 256-byte slots of one uniform
 * buffer (dynamic offsets), one submission, one readback; then the round's divergence
 * events and snapshots from the status words and metrics the kernel wrote. Also the
 * buffer, layout and session plumbing the sessions share.
 *
 * Status words, as every kernel writes them, four per replica: the seq of the dispatch in
 * which the replica diverged and the update within it, and the seq of a dispatch that was
 * cut short (its canary loop did not finish).
 *
 * Checkpoints (docs/checkpoints.md): a session reads its state buffers back with readBuffers
 * at a step boundary, and one opened from a state writes them and marks the replicas that
 * diverged before it with restoredStatusWords.
 */
import type {
  AdvanceResult,
  KernelSession,
  RunEvent,
  SessionState,
  Snapshot,
} from "../../experiments/types.ts";
import { maskDiverged, sortByStepAndReplica } from "../session_results.ts";
import { stampWallTimes } from "../snapshots.ts";
import { checked, type Gpu, unlessLost } from "./device.ts";
import { NO_SNAP, type PlannedDispatch, roundEnd } from "./dispatch_plan.ts";

/** Bytes between two dispatches' params: 256 or the device's uniform offset alignment. */
export function paramStride(device: GPUDevice): number {
  return Math.max(256, device.limits.minUniformBufferOffsetAlignment);
}

/** Writes each dispatch's params into its slot, through u32 and f32 views of it. */
export function encodeParams<T>(
  round: T[],
  stride: number,
  paramsBytes: number,
  write: (u: Uint32Array, f: Float32Array, dsp: T) => void,
): ArrayBuffer {
  const data = new ArrayBuffer(stride * round.length);
  round.forEach((dsp, i) => {
    write(
      new Uint32Array(data, i * stride, paramsBytes / 4),
      new Float32Array(data, i * stride, paramsBytes / 4),
      dsp,
    );
  });
  return data;
}

/** One dispatch of `pipeline` per planned dispatch, each with its own params slot. */
export function dispatchEach(
  pass: GPUComputePassEncoder,
  pipeline: GPUComputePipeline,
  bindGroup: GPUBindGroup,
  count: number,
  stride: number,
  groupsX: number,
  groupsY: number,
): void {
  pass.setPipeline(pipeline);
  for (let i = 0; i < count; i++) {
    pass.setBindGroup(0, bindGroup, [i * stride]);
    pass.dispatchWorkgroups(groupsX, groupsY);
  }
}

export interface RoundIo {
  paramsBuf: GPUBuffer;
  readBuf: GPUBuffer;
}

/**
 * Writes the round's params, records its commands with `encode` (dispatches and the copies
 * into the readback buffer), submits, and reads the first `readBytes` of the readback
 * buffer with one mapAsync: `read` gets the mapped range and must copy what it keeps.
 */
export async function submitRound<T>(
  gpu: Gpu,
  what: string,
  io: RoundIo,
  params: ArrayBuffer,
  readBytes: number,
  encode: (encoder: GPUCommandEncoder) => void,
  read: (mapped: ArrayBuffer) => T,
): Promise<T> {
  const { device } = gpu;
  await checked(gpu, what, () => {
    device.queue.writeBuffer(io.paramsBuf, 0, params);
    const encoder = device.createCommandEncoder();
    encode(encoder);
    device.queue.submit([encoder.finish()]);
  });
  await unlessLost(gpu, io.readBuf.mapAsync(GPUMapMode.READ, 0, readBytes));
  try {
    return read(io.readBuf.getMappedRange(0, readBytes));
  } finally {
    io.readBuf.unmap();
  }
}

/**
 * replica_diverged events of one round from the status words (recording each replica's
 * divergence step in `divergedAt`); throws if a dispatch of the round was cut short.
 */
export function roundDivergences(
  gpu: Gpu,
  experiment: string,
  round: PlannedDispatch[],
  status: Uint32Array,
  divergedAt: Float64Array,
): RunEvent[] {
  const events: RunEvent[] = [];
  const startOf = new Map(round.map((dsp) => [dsp.seq, dsp.start]));
  for (let r = 0; r < divergedAt.length; r++) {
    if (startOf.has(status[4 * r + 2])) {
      throw new Error(
        `${gpu.adapterName} cut a ${experiment} dispatch short (replica ${r}): its loop ` +
          `limit was hit, so the results would be wrong; open the session with a smaller ` +
          `maxStepsPerDispatch`,
      );
    }
    const at = startOf.get(status[4 * r]);
    if (divergedAt[r] < 0 && at !== undefined) {
      divergedAt[r] = at + status[4 * r + 1];
      events.push({ type: "replica_diverged", step: divergedAt[r], replica: r });
    }
  }
  return events;
}

/**
 * Snapshots of one round: metric `k` of replica `r` in `slot` is `value(slot, r, k)`, NaN for
 * replicas that diverged at or before the snapshot step.
 */
export function roundSnapshots(
  round: PlannedDispatch[],
  names: readonly string[],
  divergedAt: Float64Array,
  value: (slot: number, r: number, k: number) => number,
): Snapshot[] {
  const snapshots: Snapshot[] = [];
  for (const dsp of round) {
    if (dsp.slot === NO_SNAP) continue;
    const at = dsp.start + dsp.count;
    snapshots.push(maskDiverged(at, names, divergedAt, (r, k) => value(dsp.slot, r, k)));
  }
  return snapshots;
}

/** Creates buffers (at least 16 bytes, with initial data if given), recording them in `buffers`. */
export function bufferMaker(device: GPUDevice, buffers: GPUBuffer[]) {
  return (label: string, size: number, usage: number, data?: ArrayBufferView): GPUBuffer => {
    const buffer = device.createBuffer({ label, size: Math.max(16, size), usage });
    buffers.push(buffer);
    if (data) {
      device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    }
    return buffer;
  };
}

interface Layout {
  group: GPUBindGroupLayout;
  pipe: GPUPipelineLayout;
}
const layouts = new WeakMap<GPUDevice, Map<string, Layout>>();

/**
 * The bind group layout (cached per device and label) of the sessions' kernels: binding 0 the
 * params slot (a uniform with a dynamic offset), bindings 1, 2, … storage buffers.
 */
export function paramsAndStorageLayout(
  device: GPUDevice,
  label: string,
  paramsBytes: number,
  storage: GPUBufferBindingType[],
): Layout {
  let byLabel = layouts.get(device);
  if (!byLabel) layouts.set(device, byLabel = new Map());
  let l = byLabel.get(label);
  if (!l) {
    const group = device.createBindGroupLayout({
      label,
      entries: [
        {
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: paramsBytes },
        },
        ...storage.map((type, i) => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type },
        })),
      ],
    });
    l = { group, pipe: device.createPipelineLayout({ bindGroupLayouts: [group] }) };
    byLabel.set(label, l);
  }
  return l;
}

/**
 * The KernelSession of a WebGPU run: advance() calls are serialised (a second one waits for
 * the first instead of interleaving) and refused after dispose(), which destroys the buffers.
 */
export interface RoundedAdvance<T extends PlannedDispatch> {
  /** The dispatches from `from` to `to`, in rounds; `initial` asks for the step-0 snapshot. */
  rounds(from: number, to: number, initial: boolean): T[][];
  /** Runs one round on the GPU and adds its snapshots, events and frames to `result`. */
  onRound(round: T[], result: AdvanceResult, to: number): Promise<void>;
  /** Adds what is read once per call, after the last round (e.g. a frame of the state). */
  finish?(result: AdvanceResult, step: number): void;
}

/** What roundedAdvance returns: the session's step, advance() and its clock. */
export interface RoundedSession {
  stepOf(): number;
  advanceTo(target: number): Promise<AdvanceResult>;
  /** Milliseconds of compute since the session (or the run it continues) started. */
  elapsedMs(): number;
  /** Continues from a checkpoint: `at` updates done, wall times counting on from `wallMs`. */
  restore(at: number, wallMs: number): void;
}

/**
 * The advance() every WebGPU session shares: the target clamped to [step, steps] (NaN
 * means stay), the rounds run in order, the step-0 snapshot asked for once, events sorted,
 * wall times stamped. The session supplies only how to plan and read back a round.
 */
export function roundedAdvance<T extends PlannedDispatch>(
  totalSteps: number,
  startMs: number,
  how: RoundedAdvance<T>,
): RoundedSession {
  let origin = startMs;
  let step = 0;
  let reportedInitial = false;
  async function advanceTo(target: number): Promise<AdvanceResult> {
    const t0 = performance.now() - origin;
    const from = step;
    const result: AdvanceResult = { snapshots: [], events: [], frames: [] };
    const to = Number.isNaN(target)
      ? step
      : Math.max(step, Math.min(Math.floor(target), totalSteps));
    for (const round of how.rounds(step, to, !reportedInitial)) {
      await how.onRound(round, result, to);
      step = roundEnd(round);
    }
    reportedInitial = true;
    step = to;
    sortByStepAndReplica(result.events);
    how.finish?.(result, step);
    stampWallTimes(result.snapshots, from, step, t0, performance.now() - origin);
    return result;
  }
  return {
    stepOf: () => step,
    advanceTo,
    elapsedMs: () => performance.now() - origin,
    restore(at: number, wallMs: number) {
      step = at;
      reportedInitial = true; // a checkpoint is only written after an advance()
      origin = performance.now() - wallMs;
    },
  };
}

/**
 * exportState() runs in the same queue as advance(), so it reads the state at the step
 * boundary the advance() calls before it reached.
 */
export function serialisedGpuSession(
  gpu: Gpu,
  experiment: string,
  stepOf: () => number,
  advanceTo: (target: number) => Promise<AdvanceResult>,
  buffers: GPUBuffer[],
  exportState?: () => Promise<SessionState>,
): KernelSession {
  let disposed = false;
  let queue: Promise<unknown> = Promise.resolve();
  function serially<T>(work: () => Promise<T>): Promise<T> {
    const next = queue.then(() => {
      if (disposed) throw new Error(`${experiment} WebGPU session used after dispose()`);
      return work();
    });
    queue = next.catch(() => {});
    return next;
  }
  return {
    backend: "webgpu",
    adapter: gpu.adapterName,
    get step() {
      return stepOf();
    },
    advance(target: number) {
      return serially(() => advanceTo(target));
    },
    ...(exportState ? { exportState: () => serially(exportState) } : {}),
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const b of buffers) b.destroy();
    },
  };
}

/** A byte range of a device buffer (offset and size multiples of 4). */
export interface BufferRange {
  buffer: GPUBuffer;
  offset?: number;
  size: number;
}

/**
 * Copies the ranges to the host through one staging buffer and one mapAsync (the buffers
 * need COPY_SRC); for checkpoints, which are rare, so the staging buffer is not kept.
 */
export async function readBuffers(
  gpu: Gpu,
  what: string,
  ranges: BufferRange[],
): Promise<ArrayBuffer[]> {
  const { device } = gpu;
  const at: number[] = [];
  let total = 0;
  for (const r of ranges) {
    at.push(total);
    total += r.size;
  }
  const staging = device.createBuffer({
    label: `${what} readback`,
    size: Math.max(16, total),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    await checked(gpu, what, () => {
      const encoder = device.createCommandEncoder();
      ranges.forEach((r, i) => {
        if (r.size) encoder.copyBufferToBuffer(r.buffer, r.offset ?? 0, staging, at[i], r.size);
      });
      device.queue.submit([encoder.finish()]);
    });
    await unlessLost(gpu, staging.mapAsync(GPUMapMode.READ, 0, Math.max(16, total)));
    const mapped = staging.getMappedRange(0, Math.max(16, total));
    return ranges.map((r, i) => mapped.slice(at[i], at[i] + r.size));
  } finally {
    staging.destroy();
  }
}

/** Writes `data` into `buffer` at byte `offset` (the buffer needs COPY_DST). */
export function writeBufferAt(
  gpu: Gpu,
  buffer: GPUBuffer,
  offset: number,
  data: ArrayBufferView,
): void {
  gpu.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The status words of a session opened from a checkpoint: replicas that diverged before it
 * get a seq that no dispatch has (sequences stop at 0xFFFFFFFE), so the kernel keeps them
 * frozen and roundDivergences does not report them again.
 */
export function restoredStatusWords(divergedAt: ArrayLike<number>): Uint32Array {
  const words = new Uint32Array(4 * divergedAt.length);
  for (let r = 0; r < divergedAt.length; r++) if (divergedAt[r] >= 0) words[4 * r] = 0xFFFFFFFF;
  return words;
}
