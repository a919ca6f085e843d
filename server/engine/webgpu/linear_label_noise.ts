/**
 * WebGPU session for `linear-label-noise`: kernels-wgsl/linear_label_noise.wgsl advances every
 * replica (one workgroup each) by many steps per dispatch; metrics are computed on the device
 * at snapshot steps and read back once per round, with divergences and, at frame steps, the
 * per-neuron frame. Frames at fixed steps and the lazy-escape event come from
 * wrapLinearSession, as for every backend.
 *
 * Dispatches are cut at every snapshot step, at the switch to GD and at every periodic noise
 * switch (so the step kind and the noise flag are per-dispatch uniforms), and after at most
 * `maxStepsPerDispatch` steps (GPU watchdogs kill long dispatches). Each dispatch reads its
 * parameters from its own 256-byte slot of one uniform buffer (dynamic offset).
 *
 * Checkpoints (docs/checkpoints.md): W, a, S and its Kahan compensation S_comp read back from
 * the state buffer, the divergence steps, and (from wrapLinearSession) the lazy escapes.
 */
import {
  type LinearPrepared,
  NEURON_FRAME,
  noiseOn,
  prepareLinearLabelNoise,
  stepKind,
} from "../../experiments/linear_label_noise_setup.ts";
import { LINEAR_METRIC_NAMES } from "../../experiments/linear_label_noise_reference.ts";
import { isFrameStep, wrapLinearSession } from "../../experiments/linear_label_noise_session.ts";
import type { KernelSession, RunSpec, SessionState } from "../../experiments/types.ts";
import { checkSessionState, divergedArray, newSessionState, stateArray } from "../session_state.ts";
import { checked, getGpu, isLlvmpipe } from "./device.ts";
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

export interface LinearGpuOptions {
  /** Upper bound on updates per dispatch (default: from a work budget). */
  maxStepsPerDispatch?: number;
  /** Threads per workgroup, a power of two (one workgroup per replica). */
  workgroupSize?: number;
  /** Cap dispatches by llvmpipe's loop limit (default true; tests turn it off to see the check). */
  respectLoopLimit?: boolean;
}

const PARAMS_BYTES = 48; // struct Params in the WGSL
const NMET = 16; // floats per (slot, replica) in the metrics buffer
const KIND_CODE = { sgd: 0, gd: 1, oscillation: 2 } as const;
/** Multiply-adds one dispatch may do across all replicas (≈ 3·m·d per replica-step). */
const WORK_PER_DISPATCH = 1 << 27;
const MAX_STEPS_PER_DISPATCH = 8192;

export function stepsPerDispatch(replicas: number, m: number, d: number): number {
  const perStep = replicas * (3 * m * d + 64);
  return Math.max(1, Math.min(MAX_STEPS_PER_DISPATCH, Math.floor(WORK_PER_DISPATCH / perStep)));
}

/**
 * llvmpipe ends all loops of a shader invocation once they have run 65535 iterations in
 * total (Mesa gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, one counter for every loop), with no
 * error; dispatches there must stay below it. A margin covers the compiler's own loops.
 */
const LLVMPIPE_LOOP_BUDGET = 60000;
const PHILOX_LOOP = 11; // the ten rounds of philox4x32 and the exit test

export { isLlvmpipe };

/**
 * Loop iterations of the busiest invocation (thread 0), counting each loop's trip count plus
 * one: per SGD step, per GD/oscillation step, and once per dispatch (metrics, frame, checks).
 */
export function loopIterations(
  m: number,
  d: number,
  n: number,
  nTest: number,
  wg: number,
  online: boolean,
) {
  const per = (len: number) => Math.ceil(len / wg);
  const npt = per(m), ch = Math.max(1, Math.floor(wg / d)), log = Math.log2(wg) + 1;
  const sample = online
    ? per(Math.ceil(d / 4)) * (PHILOX_LOOP + 5) + d + 2
    : PHILOX_LOOP + per(d) + 1;
  const sgd = 1 + sample + PHILOX_LOOP + 2 * (npt * (d + 2) + 1) + log + d + 1;
  const theta = per(d * ch) * (Math.ceil(m / ch) + 1) + 1 + per(d) * (ch + 1) + 1;
  const gradient = online ? per(d) + 1 : per(n) * (d + 2) + 1 + per(d) * (n + 1) + 1;
  const gd = 1 + theta + d + 1 + gradient + d + 1 + npt * (d + 3 + PHILOX_LOOP) + 1;
  const perDispatch = 2 * (npt * (d + 2) + 1) + theta + d + 1 + per(n) * (d + 2) +
    per(nTest) * (d + 2) + 5 * log + npt * (d + 2) + 8;
  return { sgd, gd, perDispatch };
}

/** Most updates per dispatch that keep llvmpipe's loop counter in budget (0: none). */
export function llvmpipeStepLimit(
  prep: LinearPrepared,
  wg: number,
  kind: "sgd" | "gd",
): number {
  const it = loopIterations(prep.m, prep.d, Math.max(1, prep.n), prep.nTest, wg, prep.online);
  return Math.max(0, Math.floor((LLVMPIPE_LOOP_BUDGET - it.perDispatch) / it[kind]));
}

/** Threads per workgroup: enough for the neurons, at most 256 (the WebGPU default limit). */
function defaultWorkgroupSize(m: number): number {
  let wg = 32;
  while (wg < m && wg < 256) wg *= 2;
  return wg;
}

interface Dispatch extends PlannedDispatch {
  kind: number;
  noiseOn: boolean;
  frame: boolean;
}

function layoutFor(device: GPUDevice) {
  return paramsAndStorageLayout(device, "linear-label-noise", PARAMS_BYTES, [
    "read-only-storage",
    "read-only-storage",
    "read-only-storage",
    "storage",
    "storage",
    "storage",
    "storage",
    "storage",
  ]);
}

/** Data, initial state and constants laid out as the kernel reads them. */
function deviceLayout(prep: LinearPrepared, wg: number) {
  const { m, d, nTest, replicas: R } = prep;
  const n = Math.max(1, prep.n);
  const dataSets = prep.dataPerReplica ? R : 1;
  const initSets = prep.initPerReplica ? R : 1;
  const offY = dataSets * prep.n * d;
  const offXT = offY + dataSets * prep.n;
  const offYT = offXT + dataSets * nTest * d;
  const offStar = offYT + dataSets * nTest;
  const data = new Float32Array(offStar + dataSets * d);
  data.set(prep.X, 0);
  data.set(prep.y, offY);
  data.set(prep.Xtest, offXT);
  data.set(prep.ytest, offYT);
  data.set(prep.thetaStar, offStar);
  // init = W0 [set][d][m] | a0 [R][m] | c0 [R][m], c0 in float64 then rounded.
  const offA0 = initSets * d * m;
  const offC0 = offA0 + R * m;
  const init = new Float32Array(offC0 + R * m);
  for (let s = 0; s < initSets; s++) {
    for (let i = 0; i < m; i++) {
      for (let k = 0; k < d; k++) init[(s * d + k) * m + i] = prep.W0[(s * m + i) * d + k];
    }
  }
  init.set(prep.A0, offA0);
  for (let r = 0; r < R; r++) {
    const w0 = (prep.initPerReplica ? r : 0) * m * d;
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += prep.W0[w0 + i * d + k] ** 2;
      init[offC0 + r * m + i] = s - prep.A0[r * m + i] ** 2;
    }
  }
  const stateFloats = d * m + 3 * m;
  const state = new Float32Array(R * stateFloats);
  for (let r = 0; r < R; r++) {
    const s = prep.initPerReplica ? r : 0;
    state.set(init.subarray(s * d * m, (s + 1) * d * m), r * stateFloats);
    state.set(prep.A0.subarray(r * m, (r + 1) * m), r * stateFloats + d * m);
  }
  const ch = Math.max(1, Math.floor(wg / d));
  const consts = {
    M: m,
    D: d,
    N: n,
    NT: nTest,
    WG: wg,
    NPT: Math.ceil(m / wg),
    NB: Math.ceil(d / 4),
    CH: ch,
    SH_TP: d * ch,
    ONLINE: prep.online,
    GAUSSIAN: prep.gaussianNoise,
    DATA_PER_REPLICA: prep.dataPerReplica,
    INIT_PER_REPLICA: prep.initPerReplica,
    OFF_Y: offY,
    OFF_XT: offXT,
    OFF_YT: offYT,
    OFF_STAR: offStar,
    OFF_A0: offA0,
    OFF_C0: offC0,
  };
  const workgroupBytes = 4 * (2 * d + d + d + d * ch) + 16 * wg + 8;
  return { data, init, state, consts, n, workgroupBytes };
}

export async function openLinearLabelNoiseGpu(
  spec: RunSpec,
  options: LinearGpuOptions = {},
  state?: SessionState,
): Promise<KernelSession> {
  if (state) checkSessionState(state, spec);
  const startMs = performance.now();
  const prep = prepareLinearLabelNoise(spec);
  const gpu = await getGpu();
  const { device } = gpu;
  const { m, d, replicas: R } = prep;
  const wg = options.workgroupSize ?? defaultWorkgroupSize(m);
  const layoutData = deviceLayout(prep, wg);
  const limits = device.limits;
  if (layoutData.workgroupBytes > limits.maxComputeWorkgroupStorageSize) {
    throw new Error(
      `linear-label-noise on WebGPU keeps the sample and θ in workgroup memory: d = ${d} needs ` +
        `${layoutData.workgroupBytes} bytes, over this device's ${limits.maxComputeWorkgroupStorageSize}` +
        ` (${gpu.adapterName}); use a smaller d or the wasm backend`,
    );
  }
  const maxSteps = Math.max(1, options.maxStepsPerDispatch ?? stepsPerDispatch(R, m, d));
  // On llvmpipe every dispatch must fit the loop budget (kind by kind, see plan()).
  const loopCap = { sgd: Infinity, gd: Infinity };
  if (isLlvmpipe(gpu) && options.respectLoopLimit !== false) {
    loopCap.sgd = llvmpipeStepLimit(prep, wg, "sgd");
    loopCap.gd = llvmpipeStepLimit(prep, wg, "gd");
    if (Math.min(loopCap.sgd, loopCap.gd) < 1) {
      throw new Error(
        `linear-label-noise with m=${m}, d=${d} does not fit llvmpipe's limit of 65535 loop ` +
          `iterations per shader invocation with ${wg} threads; use a GPU adapter or wasm`,
      );
    }
  }
  const groupsX = Math.min(R, limits.maxComputeWorkgroupsPerDimension);
  const groupsY = Math.ceil(R / groupsX);
  const paramStride = paramStrideOf(device);
  const slots = snapshotSlots(spec, 4 * NMET * R);
  const frameFloats = prep.frameEvery > 0 ? R * 3 * m : 4;
  const sizes = {
    data: 4 * layoutData.data.length,
    init: 4 * layoutData.init.length,
    hyper: 16 * R,
    state: 4 * layoutData.state.length,
    status: 16 * R,
    metrics: 4 * NMET * R * slots,
    frame: 4 * frameFloats,
    scratch: 4 * R * layoutData.n,
  };
  for (const [name, bytes] of Object.entries(sizes)) {
    if (bytes > limits.maxStorageBufferBindingSize || bytes > limits.maxBufferSize) {
      throw new Error(
        `linear-label-noise on WebGPU: the ${name} buffer needs ${bytes} bytes, over this ` +
          `device's limit of ${
            Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize)
          } (${gpu.adapterName}); use fewer replicas, shared init or shared data`,
      );
    }
  }
  const readOff = { status: sizes.metrics, frame: sizes.metrics + sizes.status };
  const readBytes = sizes.metrics + sizes.status + sizes.frame;

  const code = await assemble(constHeader(layoutData.consts), [
    "float.wgsl",
    "canary.wgsl",
    "philox.wgsl",
    "linear_label_noise.wgsl",
  ]);
  const layout = layoutFor(device);
  const pipeline = await computePipeline(gpu, "linear_label_noise", code, "advance", layout.pipe);

  const buffers: GPUBuffer[] = [];
  const { bindGroup, paramsBuf, metricsBuf, statusBuf, frameBuf, readBuf } = await checked(
    gpu,
    "allocating linear-label-noise buffers",
    () => {
      const S = GPUBufferUsage.STORAGE, DST = GPUBufferUsage.COPY_DST;
      const SRC = GPUBufferUsage.COPY_SRC;
      const make = bufferMaker(device, buffers);
      const hyper = new Float32Array(4 * R);
      for (let r = 0; r < R; r++) {
        hyper.set([prep.lr[r], prep.sigma[r], prep.chainAmp[r], 0], 4 * r);
      }
      const bound = [
        make("data", sizes.data, S | DST, layoutData.data),
        make("init", sizes.init, S | DST, layoutData.init),
        make("hyper", sizes.hyper, S | DST, hyper),
        make("state", sizes.state, S | DST | SRC, layoutData.state),
        make("status", sizes.status, S | DST | SRC), // zero: nobody diverged
        make("metrics", sizes.metrics, S | SRC),
        make("frame", sizes.frame, S | SRC),
        make("scratch", sizes.scratch, S),
      ];
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
          ...bound.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
        ],
      });
      return {
        bindGroup,
        paramsBuf,
        statusBuf: bound[4],
        metricsBuf: bound[5],
        frameBuf: bound[6],
        readBuf,
      };
    },
  );

  const nextSeq = dispatchSequence();
  const divergedAt = new Float64Array(R).fill(-1);

  /** The next step after s at which the step kind or the periodic noise flag changes. */
  function nextPhaseChange(s: number): number {
    let next = Infinity;
    if (prep.gdFrom > s) next = prep.gdFrom;
    if (prep.algo === "periodic" && stepKind(prep, s) === "sgd") {
      next = Math.min(next, (Math.floor(s / prep.period) + 1) * prep.period);
    }
    return next;
  }

  function plan(from: number, target: number, withInitial: boolean): Dispatch[] {
    const out: Dispatch[] = planDispatches<Omit<Dispatch, keyof PlannedDispatch>>(
      spec,
      from,
      target,
      {
        nextSeq,
        initial: withInitial ? { kind: 0, noiseOn: false, frame: target === 0 } : undefined,
        cutAfter: (s) => {
          const cap = loopCap[stepKind(prep, s) === "sgd" ? "sgd" : "gd"];
          return Math.min(s + Math.min(maxSteps, cap), nextPhaseChange(s));
        },
        fields: (s) => ({
          kind: KIND_CODE[stepKind(prep, s)],
          noiseOn: noiseOn(prep, s),
          frame: false,
        }),
      },
    );
    // The frame, when due, is written by the call's last dispatch.
    if (out.length && prep.frameEvery > 0 && isFrameStep(target, spec, prep.frameEvery)) {
      out[out.length - 1].frame = true;
    }
    return out;
  }

  function runRound(round: Dispatch[]) {
    const metricsBytes = 4 * NMET * R * snapshotsIn(round);
    const withFrame = round.some((dsp) => dsp.frame);
    const params = encodeParams(round, paramStride, PARAMS_BYTES, (u, _f, dsp) => {
      u.set([
        dsp.start % 4294967296,
        dsp.count,
        dsp.seq,
        dsp.slot,
        prep.seed >>> 0,
        R,
        groupsX,
        dsp.kind,
        dsp.noiseOn ? 1 : 0,
        dsp.frame ? 1 : 0,
        1 + (dsp.seq & 7), // canary trip count: varies so a stale pass cannot match
        prep.firstReplica,
      ]);
    });
    return submitRound(
      gpu,
      "linear-label-noise advance",
      { paramsBuf, readBuf },
      params,
      readBytes,
      (encoder) => {
        const pass = encoder.beginComputePass();
        dispatchEach(pass, pipeline, bindGroup, round.length, paramStride, groupsX, groupsY);
        pass.end();
        if (metricsBytes) encoder.copyBufferToBuffer(metricsBuf, 0, readBuf, 0, metricsBytes);
        encoder.copyBufferToBuffer(statusBuf, 0, readBuf, readOff.status, sizes.status);
        if (withFrame) {
          encoder.copyBufferToBuffer(frameBuf, 0, readBuf, readOff.frame, sizes.frame);
        }
      },
      (mapped) => ({
        metrics: new Float32Array(mapped.slice(0, metricsBytes)),
        status: new Uint32Array(mapped.slice(readOff.status, readOff.status + sizes.status)),
        frame: withFrame
          ? new Float32Array(mapped.slice(readOff.frame, readOff.frame + sizes.frame))
          : undefined,
      }),
    );
  }

  const clock = roundedAdvance(spec.steps, startMs, {
    rounds: (from, to, initial) => splitRounds(plan(from, to, initial), slots),
    async onRound(round, result, to) {
      const data = await runRound(round);
      result.events.push(
        ...roundDivergences(gpu, "linear-label-noise", round, data.status, divergedAt),
      );
      const snapshots = roundSnapshots(
        round,
        LINEAR_METRIC_NAMES,
        divergedAt,
        (slot, r, q) => data.metrics[(slot * R + r) * NMET + q],
      );
      // Oscillation has no balance identity (the forced chain is not a gradient step).
      if (prep.algo === "oscillation") {
        for (const snap of snapshots) snap.metrics.balance_residual.fill(NaN);
      }
      result.snapshots.push(...snapshots);
      if (data.frame) {
        const values = data.frame.subarray(0, R * 3 * m);
        for (let r = 0; r < R; r++) {
          if (divergedAt[r] >= 0) values.fill(NaN, r * 3 * m, (r + 1) * 3 * m);
        }
        result.frames.push({ step: to, name: NEURON_FRAME, width: 3 * m, values });
      }
    },
  });

  // Per replica the kernel keeps W [d][m] | a [m] | S [m] | S_comp [m]; the state W [m × d].
  const stateBuf = buffers.find((b) => b.label === "state")!;
  const stateFloats = d * m + 3 * m;
  const vectors = ["a", "S", "S_comp"] as const;
  if (state) {
    const words = new Float32Array(R * stateFloats);
    const W = stateArray(state, "W", R * m * d);
    for (let r = 0; r < R; r++) {
      const base = r * stateFloats;
      for (let i = 0; i < m; i++) {
        for (let c = 0; c < d; c++) words[base + c * m + i] = W[(r * m + i) * d + c];
      }
      vectors.forEach((name, v) => {
        const src = stateArray(state, name, R * m);
        for (let i = 0; i < m; i++) words[base + (d + v) * m + i] = src[r * m + i];
      });
    }
    divergedAt.set(stateArray(state, "diverged", R));
    await checked(gpu, "restoring linear-label-noise state", () => {
      writeBufferAt(gpu, stateBuf, 0, words);
      writeBufferAt(gpu, statusBuf, 0, restoredStatusWords(divergedAt));
    });
    clock.restore(state.step, state.wallMs);
  }

  async function exportState(): Promise<SessionState> {
    const [raw] = await readBuffers(gpu, "linear-label-noise checkpoint", [
      { buffer: stateBuf, size: sizes.state },
    ]);
    const words = new Float32Array(raw);
    const W = new Float32Array(R * m * d);
    const arrays = Object.fromEntries(vectors.map((name) => [name, new Float32Array(R * m)]));
    for (let r = 0; r < R; r++) {
      const base = r * stateFloats;
      for (let i = 0; i < m; i++) {
        for (let c = 0; c < d; c++) W[(r * m + i) * d + c] = words[base + c * m + i];
      }
      vectors.forEach((name, v) => {
        arrays[name].set(words.subarray(base + (d + v) * m, base + (d + v + 1) * m), r * m);
      });
    }
    return newSessionState(spec, "webgpu", clock.stepOf(), clock.elapsedMs(), {
      W,
      ...arrays,
      diverged: divergedArray(divergedAt),
    });
  }

  const session = serialisedGpuSession(
    gpu,
    "linear-label-noise",
    clock.stepOf,
    clock.advanceTo,
    buffers,
    exportState,
  );
  return wrapLinearSession(session, prep, spec, state);
}
