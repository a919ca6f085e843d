/**
 * WebGPU session for PEGR: kernels-wgsl/pegr.wgsl advances every replica (one workgroup each)
 * by many steps per dispatch, with the weights, the data and the per-step scratch on the
 * device; at snapshot steps the same dispatch computes the metrics of the new weights, and a
 * second dispatch (`test_acc`, one workgroup per block of test points and replica) counts the
 * correct test points. Metrics, test counts and divergences are read back once per round:
 * one round per advance() call unless it holds more snapshots or dispatches than the
 * buffers take.
 *
 * How a call is cut into dispatches: at every snapshot step (a snapshot is always the state
 * after a dispatch's last update), at pegr_off (so "λ in force" is a per-dispatch uniform,
 * exactly the reference's lambdaAt), and after at most `maxStepsPerDispatch` steps (GPU
 * watchdogs kill long dispatches). On llvmpipe a fourth cut keeps each dispatch under its
 * shared loop-iteration limit, and a canary loop turns a dispatch cut short anyway into an
 * error. Each dispatch reads its parameters from its own 256-byte slot of one uniform buffer
 * (dynamic offset), so all of them go in one submission.
 *
 * Events: replica_diverged, as the reference dates it (the update whose result is not
 * finite). The switch-off at pegr_off is a planned event (pegrPlannedEvents) that the run
 * driver interleaves for every backend, so sessions do not emit it; PEGR has no frames.
 *
 * Precision: everything is float32 (WGSL has no f64); the wasm kernel does the O(m·n)
 * coefficient arithmetic in float64. test/parity_webgpu_pegr_test.ts states the tolerances.
 *
 * Checkpoints (docs/checkpoints.md): W [R × 2m × d] read back from the state buffer, and the
 * divergence steps; the switch-off follows from the step.
 */
import { PEGR_METRICS, type PegrPrepared, preparePegr } from "../../experiments/pegr.ts";
import type { KernelSession, RunSpec, SessionState } from "../../experiments/types.ts";
import {
  checkSessionState,
  divergedArray,
  newSessionState,
  padRows,
  stateArray,
  unpadRows,
} from "../session_state.ts";
import { checked, getGpu, type Gpu, isLlvmpipe, LLVMPIPE_LOOP_LIMIT } from "./device.ts";
import {
  dispatchSequence,
  MAX_DISPATCHES_PER_ROUND,
  NO_SNAP,
  planDispatches,
  type PlannedDispatch,
  snapshotsIn,
  snapshotSlots,
  splitRounds,
} from "./dispatch_plan.ts";
import {
  bufferMaker,
  encodeParams,
  paramsAndStorageLayout,
  paramStride as paramStrideOf,
  readBuffers,
  restoredStatusWords,
  roundDivergences,
  roundedAdvance,
  roundSnapshots,
  serialisedGpuSession,
  submitRound,
  writeBufferAt,
} from "./rounds.ts";
import { assemble, computePipeline, constHeader } from "./wgsl.ts";

export interface PegrGpuOptions {
  /** Upper bound on updates per dispatch (default: from a work budget, see stepsPerDispatch). */
  maxStepsPerDispatch?: number;
  /** Threads per workgroup of the training kernel, a power of two (one workgroup per replica). */
  workgroupSize?: number;
  /**
   * Per-step scratch in workgroup memory where it fits (default: except on llvmpipe, whose
   * compile time grows with workgroup arrays), else in a storage buffer.
   */
  scratchInWorkgroup?: boolean;
  /** Cap dispatches by llvmpipe's loop limit (default true; tests turn it off to see the check). */
  respectLoopLimit?: boolean;
}

const METRIC_NAMES = PEGR_METRICS.map((m) => m.name);
const TEST_ACCURACY = METRIC_NAMES.indexOf("test_accuracy");
const NMET = 12; // floats per (slot, replica) in the metrics buffer (11 used)
const PARAMS_BYTES = 80; // struct Params in the WGSL (72 bytes), rounded up to 16
const WG_TEST = 64; // threads per test_acc workgroup: one test point each
/**
 * Multiply-adds one dispatch may do across all replicas (≈ 4·m·n·d per replica-step, the
 * forward and update passes): a few ms on an H100, well under a second on GPUs 50× slower.
 */
const WORK_PER_DISPATCH = 2 ** 32;
const MAX_STEPS_PER_DISPATCH = 4096;
/** Share of llvmpipe's loop limit a dispatch may use; the margin covers compiler loops. */
const LLVMPIPE_LOOP_BUDGET = Math.floor(0.9 * LLVMPIPE_LOOP_LIMIT);

/** Updates per dispatch: long enough to amortise a launch, short enough for watchdogs. */
export function stepsPerDispatch(replicas: number, n: number, m: number, d: number): number {
  const perStep = replicas * (4 * m * n * d + 8 * m * n * n + 64);
  return Math.max(1, Math.min(MAX_STEPS_PER_DISPATCH, Math.floor(WORK_PER_DISPATCH / perStep)));
}

/**
 * Loop iterations of the busiest invocation (thread 0) of `advance`: per update (FGR's longer
 * path when `fgr`) and once per dispatch (‖ξ_i‖², the snapshot's metrics, the reductions and
 * the canary); `test_acc` runs `perTestPoint` in one invocation. A loop of t trips whose body
 * runs b iterations of inner loops counts t·(1 + b) + 2: measured on llvmpipe, the counts
 * run 1–3 % above t·(1 + b) + 1 (at d = 400, n = 20, m = 10, 256 threads, GD is cut short
 * from 149 steps per dispatch on, FGR from 121), and this bound is 3–8 % above them.
 */
export function loopIterations(d: number, n: number, m: number, wg: number, fgr: boolean) {
  const Q = 2 * m, D4 = Math.ceil(d / 4);
  const L = (trips: number, body = 0) => trips * (1 + body) + 2;
  const pairs = Math.ceil(Q * n / wg), qT = Math.ceil(Q / wg), nT = Math.ceil(n / wg);
  const items = Math.ceil(Q * D4 / wg);
  const forward = L(pairs, L(D4)) + L(qT) + L(nT, L(Q));
  const direction = L(pairs) + L(qT, L(n));
  const fgrExtra = direction + L(pairs, L(n)) + L(nT, L(Q)) + L(pairs) + L(qT, L(n));
  const perStep = 1 + forward + direction + (fgr ? fgrExtra : 0) + L(items, L(n));
  const reduction = L(Math.log2(wg));
  const metrics = forward + direction + L(pairs, L(D4)) + L(nT) + L(qT) + L(pairs, L(n)) +
    3 * reduction;
  const perDispatch = 2 + L(nT) + metrics + L(2) + 16;
  return { perStep, perDispatch, perTestPoint: L(Q, L(D4)) + L(2) + 16 };
}

/** Most updates per dispatch that keep llvmpipe's shared loop counter in budget (0: none). */
export function llvmpipeStepLimit(
  d: number,
  n: number,
  m: number,
  wg: number,
  fgr: boolean,
): number {
  const { perStep, perDispatch } = loopIterations(d, n, m, wg, fgr);
  return Math.max(0, Math.floor((LLVMPIPE_LOOP_BUDGET - perDispatch) / perStep));
}

/**
 * Threads per workgroup: the power of two covering the larger parallel phase (2m·n inner
 * products, 2m·⌈d/4⌉ weight vectors), between 32 and 256. On llvmpipe one update and one
 * snapshot must also fit the loop budget, which may need more threads.
 */
function chooseWorkgroupSize(gpu: Gpu, prep: PegrPrepared, requested?: number): number {
  const { d, n, m } = prep;
  const fgr = prep.algo === "fgr";
  const limits = gpu.device.limits;
  const max = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (requested !== undefined) {
    if (!Number.isInteger(Math.log2(requested)) || requested > max) {
      throw new Error(`workgroupSize must be a power of two ≤ ${max}, got ${requested}`);
    }
    return requested;
  }
  let wg = 32;
  while (wg < Math.max(2 * m * n, 2 * m * Math.ceil(d / 4)) && wg < 256) wg *= 2;
  wg = Math.min(wg, 2 ** Math.floor(Math.log2(max)));
  if (!isLlvmpipe(gpu)) return wg;
  while (llvmpipeStepLimit(d, n, m, wg, fgr) < 1 && wg * 2 <= max) wg *= 2;
  if (llvmpipeStepLimit(d, n, m, wg, fgr) < 1) {
    throw new Error(
      `pegr with d=${d}, n=${n}, m=${m} does not fit llvmpipe's limit of ${LLVMPIPE_LOOP_LIMIT} ` +
        `loop iterations per shader invocation even with ${wg} threads; use a GPU adapter`,
    );
  }
  return wg;
}

function layoutFor(device: GPUDevice) {
  return paramsAndStorageLayout(device, "pegr", PARAMS_BYTES, [
    "read-only-storage",
    "read-only-storage",
    "storage",
    "storage",
    "storage",
    "storage",
  ]);
}

interface Dispatch extends PlannedDispatch {
  /** λ in force for the dispatch's updates, and at the snapshot step. */
  regOn: boolean;
  snapRegOn: boolean;
}

/** Copies [rows × d] into [rows × 4⌈d/4⌉] at `off` (padding stays zero). */
function copyPadded(
  dst: Float32Array,
  off: number,
  src: ArrayLike<number>,
  rows: number,
  d: number,
  scale = 1,
) {
  const dp = 4 * Math.ceil(d / 4);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < d; k++) dst[off + r * dp + k] = scale * src[r * d + k];
  }
}

export async function openPegrGpu(
  spec: RunSpec,
  options: PegrGpuOptions = {},
  state?: SessionState,
): Promise<KernelSession> {
  if (state) checkSessionState(state, spec);
  const startMs = performance.now();
  const prep = preparePegr(spec);
  const gpu = await getGpu();
  const { device } = gpu;
  const { d, n, m, nTest } = prep;
  const R = spec.replicas, Q = 2 * m, D4 = Math.ceil(d / 4);
  const sets = prep.dataPerReplica ? R : 1;
  const fgr = prep.algo === "fgr";
  const wg = chooseWorkgroupSize(gpu, prep, options.workgroupSize);
  let maxSteps = Math.max(1, options.maxStepsPerDispatch ?? stepsPerDispatch(R, n, m, d));
  if (isLlvmpipe(gpu) && options.respectLoopLimit !== false) {
    maxSteps = Math.max(1, Math.min(maxSteps, llvmpipeStepLimit(d, n, m, wg, fgr)));
    if (loopIterations(d, n, m, wg, fgr).perTestPoint > LLVMPIPE_LOOP_BUDGET) {
      throw new Error(
        `pegr with d=${d}, m=${m}: one test point's 2m inner products exceed llvmpipe's ` +
          `limit of ${LLVMPIPE_LOOP_LIMIT} loop iterations per shader invocation; use a GPU adapter`,
      );
    }
  }

  const scr = 3 * Q + 6 * n + 4 * Q * n + 4 * wg;
  const limits = device.limits;
  // llvmpipe compiles the zero-initialisation of a workgroup array into one store per
  // element: seconds per thousand floats. There the scratch is in storage (as fast there).
  const wgScratch = (options.scratchInWorkgroup ?? !isLlvmpipe(gpu)) &&
    4 * scr + 16 <= limits.maxComputeWorkgroupStorageSize;
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  // More than 65535 replicas need a second grid dimension; split them evenly.
  const groupsY = Math.ceil(R / maxDim);
  const groupsX = Math.ceil(R / groupsY);
  const testBlocks = Math.ceil(nTest / WG_TEST);
  if (testBlocks > maxDim) {
    throw new Error(`pegr on WebGPU: n_test=${nTest} needs more than ${maxDim} workgroups`);
  }
  const paramStride = paramStrideOf(device);
  const slots = snapshotSlots(spec, 4 * NMET * R);

  // Offsets (vec4 units in `rows`, floats in `aux`, words in `flags`).
  const off = {
    zt: sets * n * D4,
    w0: sets * (n + nTest) * D4,
    yt: sets * n,
    g: sets * (n + nTest),
    gi: sets * (n + nTest + n * n),
    h: sets * (n + nTest + 2 * n * n),
    cnt: 4 * R,
  };
  const sizes = {
    rows: 16 * (off.w0 + R * Q * D4),
    aux: 4 * (off.h + 4 * R),
    state: 16 * R * Q * D4,
    flags: 4 * (off.cnt + slots * R),
    metrics: 4 * NMET * R * slots,
    scratch: wgScratch ? 16 : 4 * R * scr,
  };
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  for (const [name, bytes] of Object.entries(sizes)) {
    if (bytes > maxBinding) {
      throw new Error(
        `pegr on WebGPU: the ${name} buffer needs ${bytes} bytes, over this device's limit ` +
          `of ${maxBinding} (${gpu.adapterName}); use fewer replicas, data=shared or a smaller n_test`,
      );
    }
  }
  // Largest offset a u32 index in the kernel reaches: vec4 and float indices stay < 2^32.
  if (off.w0 + R * Q * D4 > 0xFFFFFFFF || off.h + 4 * R > 0xFFFFFFFF) {
    throw new Error("pegr on WebGPU: buffers too large for 32-bit indices");
  }

  const consts = {
    D4,
    N: n,
    M: m,
    Q,
    NT: nTest,
    WG: wg,
    WGT: WG_TEST,
    ALGO: prep.algoCode,
    DATA_PER_REPLICA: prep.dataPerReplica,
    WG_SCRATCH: wgScratch,
    SH_LEN: wgScratch ? scr : 1,
  };
  const code = await assemble(constHeader(consts), [
    "float.wgsl",
    "canary.wgsl",
    "logistic.wgsl",
    "pegr.wgsl",
  ]);
  const layout = layoutFor(device);
  const [advancePipe, testPipe] = await Promise.all([
    computePipeline(gpu, "pegr", code, "advance", layout.pipe),
    computePipeline(gpu, "pegr", code, "test_acc", layout.pipe),
  ]);

  const buffers: GPUBuffer[] = [];
  const { bindGroup, paramsBuf, metricsBuf, flagsBuf, stateBuf, readBuf } = await checked(
    gpu,
    "allocating pegr buffers",
    () => {
      const S = GPUBufferUsage.STORAGE, DST = GPUBufferUsage.COPY_DST;
      const SRC = GPUBufferUsage.COPY_SRC;
      const make = bufferMaker(device, buffers);
      const rows = new Float32Array(sizes.rows / 4);
      copyPadded(rows, 0, prep.Z, sets * n, d);
      copyPadded(rows, 4 * off.zt, prep.ZTest, sets * nTest, d);
      // W0 = σ0·G0 rounded to float32, the wasm kernel's W0: the state starts there.
      for (let r = 0; r < R; r++) {
        const set = prep.dataPerReplica ? r : 0;
        copyPadded(
          rows,
          4 * (off.w0 + r * Q * D4),
          prep.G0.subarray(set * Q * d, (set + 1) * Q * d),
          Q,
          d,
          prep.sigma0[r],
        );
      }
      const aux = new Float32Array(sizes.aux / 4);
      aux.set(prep.y, 0);
      aux.set(prep.yTest, off.yt);
      aux.set(prep.zGram, off.g);
      aux.set(prep.zGramInverse, off.gi);
      for (let r = 0; r < R; r++) {
        aux.set([prep.lr[r], prep.sigmaP[r], prep.lambda[r], 0], off.h + 4 * r);
      }
      const rowsBuf = make("pegr rows", sizes.rows, S | DST, rows);
      const auxBuf = make("pegr aux", sizes.aux, S | DST, aux);
      const stateBuf = make(
        "pegr state",
        sizes.state,
        S | DST | SRC,
        rows.subarray(4 * off.w0),
      );
      const flagsBuf = make("pegr flags", sizes.flags, S | DST | SRC); // zero: nobody diverged
      const metricsBuf = make("pegr metrics", sizes.metrics, S | SRC);
      const scratchBuf = make("pegr scratch", sizes.scratch, S);
      const paramsBuf = make(
        "pegr params",
        paramStride * MAX_DISPATCHES_PER_ROUND,
        GPUBufferUsage.UNIFORM | DST,
      );
      const readBuf = make(
        "pegr readback",
        sizes.metrics + sizes.flags,
        GPUBufferUsage.MAP_READ | DST,
      );
      const bindGroup = device.createBindGroup({
        layout: layout.group,
        entries: [
          { binding: 0, resource: { buffer: paramsBuf, size: PARAMS_BYTES } },
          ...[rowsBuf, auxBuf, stateBuf, flagsBuf, metricsBuf, scratchBuf].map((buffer, i) => ({
            binding: i + 1,
            resource: { buffer },
          })),
        ],
      });
      return { bindGroup, paramsBuf, metricsBuf, flagsBuf, stateBuf, readBuf };
    },
  );

  const nextSeq = dispatchSequence();
  /** Absolute step at which each replica diverged (the event's step), or -1. */
  const divergedAt = new Float64Array(R).fill(-1);

  /** The dispatches taking the run from `from` to `target`, in order. */
  function plan(from: number, target: number, withInitial: boolean): Dispatch[] {
    const regOn = (t: number) => t < prep.regOff;
    return planDispatches(spec, from, target, {
      nextSeq,
      initial: withInitial ? { regOn: false, snapRegOn: regOn(from) } : undefined,
      // A dispatch ends at pegr_off, so that λ is in force for all or none of its updates.
      cutAfter: (s) => Math.min(s + maxSteps, s < prep.regOff ? prep.regOff : Infinity),
      fields: (s, e) => ({ regOn: regOn(s), snapRegOn: regOn(e) }),
    });
  }

  /** Submits one round and reads back metrics, divergences and test counts with one map. */
  function runRound(round: Dispatch[]) {
    const used = snapshotsIn(round);
    const metricsBytes = 4 * NMET * R * used;
    const flagsBytes = 4 * (off.cnt + used * R);
    const readBytes = metricsBytes + flagsBytes;
    const params = encodeParams(round, paramStride, PARAMS_BYTES, (u, f, dsp) => {
      u[0] = dsp.count;
      u[1] = dsp.seq;
      u[2] = dsp.slot;
      u[3] = dsp.regOn ? 1 : 0;
      u[4] = dsp.snapRegOn ? 1 : 0;
      u[5] = R;
      u[6] = groupsX;
      u[7] = 2; // canary trip count
      f[8] = prep.muNorm;
      f[9] = prep.fgrScale;
      u[10] = off.zt;
      u[11] = off.w0;
      u[12] = off.yt;
      u[13] = off.g;
      u[14] = off.gi;
      u[15] = off.h;
      u[16] = off.cnt;
      u[17] = 0; // P.zero
    });
    return submitRound(
      gpu,
      "pegr advance",
      { paramsBuf, readBuf },
      params,
      readBytes,
      (encoder) => {
        if (used) encoder.clearBuffer(flagsBuf, 4 * off.cnt, 4 * used * R);
        const pass = encoder.beginComputePass();
        round.forEach((dsp, i) => {
          pass.setBindGroup(0, bindGroup, [i * paramStride]);
          pass.setPipeline(advancePipe);
          pass.dispatchWorkgroups(groupsX, groupsY);
          if (dsp.slot !== NO_SNAP) {
            pass.setPipeline(testPipe);
            pass.dispatchWorkgroups(testBlocks, groupsX, groupsY);
          }
        });
        pass.end();
        if (metricsBytes) encoder.copyBufferToBuffer(metricsBuf, 0, readBuf, 0, metricsBytes);
        encoder.copyBufferToBuffer(flagsBuf, 0, readBuf, metricsBytes, flagsBytes);
      },
      (mapped) => ({
        metrics: new Float32Array(mapped.slice(0, metricsBytes)),
        flags: new Uint32Array(mapped.slice(metricsBytes, readBytes)),
      }),
    );
  }

  const clock = roundedAdvance(spec.steps, startMs, {
    rounds: (from, to, initial) => splitRounds(plan(from, to, initial), slots),
    async onRound(round, result) {
      const data = await runRound(round);
      result.events.push(...roundDivergences(gpu, "pegr", round, data.flags, divergedAt));
      result.snapshots.push(
        ...roundSnapshots(
          round,
          METRIC_NAMES,
          divergedAt,
          (slot, r, k) =>
            k === TEST_ACCURACY
              ? data.flags[off.cnt + slot * R + r] / nTest
              : data.metrics[(slot * R + r) * NMET + k],
        ),
      );
    },
  });

  const rowsW = R * Q, dp = 4 * D4;
  if (state) {
    const W = new Float32Array(rowsW * dp);
    padRows(W, stateArray(state, "W", rowsW * d), rowsW, d, dp);
    divergedAt.set(stateArray(state, "diverged", R));
    await checked(gpu, "restoring pegr state", () => {
      writeBufferAt(gpu, stateBuf, 0, W);
      writeBufferAt(gpu, flagsBuf, 0, restoredStatusWords(divergedAt));
    });
    clock.restore(state.step, state.wallMs);
  }

  async function exportState(): Promise<SessionState> {
    const [W] = await readBuffers(gpu, "pegr checkpoint", [
      { buffer: stateBuf, size: sizes.state },
    ]);
    return newSessionState(spec, "webgpu", clock.stepOf(), clock.elapsedMs(), {
      W: unpadRows(new Float32Array(W), rowsW, d, dp),
      diverged: divergedArray(divergedAt),
    });
  }

  return serialisedGpuSession(gpu, "pegr", clock.stepOf, clock.advanceTo, buffers, exportState);
}
