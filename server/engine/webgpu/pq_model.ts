/**
 * WebGPU sessions for `large-lr` and `label-noise-anneal`: kernels-wgsl/pq_model.wgsl trains
 * every replica (one workgroup each) by many steps per dispatch, with the data, the weights,
 * the per-step scratch and the stored activation patterns on the device, for all six
 * algorithms (one kernel, the algorithm a compile-time constant), as the wasm session
 * (server/engine/wasm/pq_model.ts) does on its kernel. The anneal is decided on the device per
 * replica (the loss rule on the clean training loss the kernel computes at the check steps;
 * the step rule at anneal_step), which also stores that replica's activation pattern.
 *
 * Metrics: at a snapshot step the kernel copies the float32 weights into a snapshot slot and
 * counts the activation flips against the stored pattern; the host evaluates every other
 * metric in float64 from those weights with the reference's own code (pqMetrics), so metric
 * formulas exist once. Weights, flips, anneals and divergences are read back once per round:
 * one round per advance() call unless it holds more snapshots or dispatches than the buffers
 * take (dispatch_plan.ts).
 *
 * Dispatches end at every snapshot step and after at most `maxStepsPerDispatch` updates (GPU
 * watchdogs; on llvmpipe, its shared loop-iteration limit, with a canary loop that turns a
 * dispatch cut short anyway into an error). Schedule points (anneal_step, the pattern step,
 * the loss-rule checks, noise_off_step) reach the kernel relative to each dispatch's start.
 *
 * Events: phase_change for loss-rule anneals (its detail quotes the float32 loss the kernel
 * checked), replica_diverged as the reference dates it; the step-rule anneal and the noise
 * switch-off are planned events of the run driver.
 *
 * Checkpoints (server/experiments/pq_state.ts, docs/checkpoints.md): W and V, the stored
 * patterns and the flag words (anneals, stored patterns) read back from the device, the
 * divergence and anneal steps, and the race and floor watches.
 */
import type { KernelSession, RunEvent, RunSpec, SessionState } from "../../experiments/types.ts";
import { exportPQDevice, loadPQDevice } from "../../experiments/pq_state.ts";
import { checkSessionState, newSessionState, padRows, unpadRows } from "../session_state.ts";
import {
  dataSetOf,
  initPQNet,
  patternPairs,
  type PQData,
  pqMetrics,
  type PQNet,
  type PQShape,
} from "../../experiments/pq_model.ts";
import { annealEvent, type AnnealRule } from "../../experiments/pq_anneal.ts";
import { initialPhase, phaseMetrics } from "../../experiments/pq_anneal.ts";
import type { FloorWatch } from "../../experiments/pq_floor.ts";
import type { RaceWatch } from "../../experiments/pq_race.ts";
import {
  LARGE_LR_METRICS,
  largeLrFloorWatch,
  largeLrRaceWatch,
  prepareLargeLr,
} from "../../experiments/large_lr.ts";
import {
  LABEL_NOISE_METRICS,
  labelNoiseRaceWatch,
  prepareLabelNoise,
} from "../../experiments/label_noise_anneal.ts";
import { decidedAtUpdate, maskDiverged } from "../session_results.ts";
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
  serialisedGpuSession,
  submitRound,
  writeBufferAt,
} from "./rounds.ts";
import { assemble, computePipeline, constHeader } from "./wgsl.ts";

export interface PQGpuOptions {
  /** Upper bound on updates per dispatch (default: from a work budget). */
  maxStepsPerDispatch?: number;
  /** Threads per workgroup, a power of two (one workgroup per replica). */
  workgroupSize?: number;
  /** Cap dispatches by llvmpipe's loop limit (default true; tests turn it off to see the check). */
  respectLoopLimit?: boolean;
}

/** Kernel algorithm codes (as kernels-as/pq_model.ts): large-lr 0..2, label-noise 3..5. */
const LABEL_NOISE_CODE_OFFSET = 3;
const NEVER = 0xFFFFFFFF;
const PARAMS_BYTES = 96; // struct Params (88 bytes), rounded up to 16
/** Multiply-adds one dispatch may do across all replicas (a few ms on a GPU). */
const WORK_PER_DISPATCH = 2 ** 31;
const MAX_STEPS_PER_DISPATCH = 4096;
const LLVMPIPE_LOOP_BUDGET = Math.floor(0.9 * LLVMPIPE_LOOP_LIMIT);

/** Everything the common session needs from either experiment's prepared run. */
interface PQRun {
  experiment: string;
  shape: PQShape;
  data: PQData;
  replicas: number;
  seed: number;
  /** Global index of replica 0 (RunSpec.firstReplica): keys and data seeds use it + r. */
  firstReplica: number;
  kernelAlgo: number;
  tau0: Float64Array;
  eta1: Float64Array;
  eta2: Float64Array;
  lambda: Float64Array;
  tauXi: Float64Array;
  tauPre: Float64Array;
  delta: Float64Array;
  threshold: Float64Array;
  anneal: AnnealRule;
  annealStep: number;
  checkEvery: number;
  noiseOffStep: number;
  metricNames: string[];
  /** large-lr's weight-decay floor warning, fed the snapshots' training loss. */
  floorWatch?: FloorWatch;
  race: RaceWatch;
  /** The replica whose initialisation replica r copies (large-lr's noise pairs); r if absent. */
  initOf?: Int32Array;
}

const isAnnealing = (algo: number) => algo === 0 || algo === 3 || algo === 5;
const isFullBatch = (algo: number) => algo !== 3 && algo !== 4;

/**
 * Loop iterations of the busiest invocation (thread 0) of `advance`, per update and once per
 * dispatch (the snapshot, the anneal or pattern pass, the canary). A loop of t trips whose
 * body runs b inner iterations counts t·(1 + b) + 2, and a Philox block 12 (its 10 rounds).
 */
export function loopIterations(run: PQRun, wg: number) {
  const { n, half } = run.shape;
  const D4 = Math.ceil(run.shape.d / 4);
  const L = (trips: number, body = 0) => trips * (1 + body) + 2;
  const c = (x: number) => Math.ceil(x / wg);
  const PHILOX = 12;
  const pairs = c(n * half), items = c(half * D4);
  const forward = L(pairs, L(D4)) + L(c(n), L(half)) + L(n);
  const pattern = L(pairs);
  const snapshot = L(items, L(4)) + forward + L(pairs);
  let perStep: number;
  if (isFullBatch(run.kernelAlgo)) {
    const pre = run.kernelAlgo === 2 ? L(c(half / 2), PHILOX + L(4)) : 0;
    perStep = 1 + pre + forward + L(items, 2 * L(n) + 4 * PHILOX + 2);
  } else {
    const sgd = PHILOX + L(c(half), L(D4)) + L(half) + L(items);
    const checks = run.anneal === "loss" && isAnnealing(run.kernelAlgo)
      ? Math.ceil((forward + pattern) / run.checkEvery)
      : 0;
    perStep = 1 + sgd + checks;
  }
  const perDispatch = 2 * (forward + pattern) + snapshot + L(2) + 32;
  return { perStep, perDispatch };
}

function chooseWorkgroupSize(gpu: Gpu, run: PQRun, requested?: number): number {
  const limits = gpu.device.limits;
  const max = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (requested !== undefined) {
    if (!Number.isInteger(Math.log2(requested)) || requested > max) {
      throw new Error(`workgroupSize must be a power of two ≤ ${max}, got ${requested}`);
    }
    return requested;
  }
  const { n, half, d } = run.shape;
  let wg = 32;
  while (wg < Math.max(n * half, half * Math.ceil(d / 4)) && wg < 256) wg *= 2;
  wg = Math.min(wg, 2 ** Math.floor(Math.log2(max)));
  if (!isLlvmpipe(gpu)) return wg;
  const fits = (w: number) => {
    const { perStep, perDispatch } = loopIterations(run, w);
    return perStep + perDispatch <= LLVMPIPE_LOOP_BUDGET;
  };
  while (!fits(wg) && wg * 2 <= max) wg *= 2;
  if (!fits(wg)) {
    throw new Error(
      `${run.experiment} with d=${d}, m=${2 * half}, N=${n} does not fit llvmpipe's limit of ` +
        `${LLVMPIPE_LOOP_LIMIT} loop iterations per shader invocation even with ${wg} threads; ` +
        `use a GPU adapter`,
    );
  }
  return wg;
}

/** The label flips iff (w1 >> 8) < K, i.e. ((w1 >> 8) + 0.5)/2^24 < δ exactly. */
export function flipCut(delta: number): number {
  return Math.max(0, Math.min(2 ** 24, Math.ceil(delta * 2 ** 24 - 0.5)));
}

async function openPQGpu(
  spec: RunSpec,
  run: PQRun,
  { state, ...options }: PQGpuOptions & { state?: SessionState },
): Promise<KernelSession> {
  if (state) checkSessionState(state, spec);
  const startMs = performance.now();
  const gpu = await getGpu();
  const { device } = gpu;
  const { shape, data, replicas: R } = run;
  const { d, n, half, m } = shape;
  const D4 = Math.ceil(d / 4), dp = 4 * D4;
  const sets = data.sets;
  const algo = run.kernelAlgo;
  const annealing = isAnnealing(algo);
  const byLoss = annealing && run.anneal === "loss";
  const wg = chooseWorkgroupSize(gpu, run, options.workgroupSize);
  const workPerStep = R * (isFullBatch(algo) ? 3 * n * half * d : 3 * half * d) + 64;
  let maxSteps = Math.max(
    1,
    options.maxStepsPerDispatch ??
      Math.min(MAX_STEPS_PER_DISPATCH, Math.floor(WORK_PER_DISPATCH / workPerStep)),
  );
  if (isLlvmpipe(gpu) && options.respectLoopLimit !== false) {
    const { perStep, perDispatch } = loopIterations(run, wg);
    maxSteps = Math.max(
      1,
      Math.min(maxSteps, Math.floor((LLVMPIPE_LOOP_BUDGET - perDispatch) / perStep)),
    );
  }
  const limits = device.limits;
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const groupsY = Math.ceil(R / maxDim);
  const groupsX = Math.ceil(R / groupsY);
  const paramStride = paramStrideOf(device);
  const snapFloats = R * 2 * half * d;
  const slots = snapshotSlots(spec, 4 * (snapFloats + R));
  const scr = 2 * n * half + 2 * n + m + 2 * half;

  const off = {
    x2: sets * n,
    sub: 3 * sets * n,
    a: 4 * sets * n,
    b: 4 * sets * n + R * half,
    h: 4 * sets * n + 2 * R * half,
    anneal: 4 * R,
    flips: 8 * R,
  };
  const sizes = {
    rows: 4 * sets * n * dp,
    aux: 4 * (off.h + 8 * R),
    state: 4 * 2 * R * half * dp,
    flags: 4 * (off.flips + slots * R),
    snaps: 4 * snapFloats * slots,
    scratch: 4 * R * scr,
    pattern: 4 * R * n * m,
  };
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  for (const [name, bytes] of Object.entries(sizes)) {
    if (bytes > maxBinding) {
      throw new Error(
        `${run.experiment} on WebGPU: the ${name} buffer needs ${bytes} bytes, over this ` +
          `device's limit of ${maxBinding} (${gpu.adapterName}); use fewer replicas, ` +
          `data=shared, or a smaller d, m or κ²`,
      );
    }
    if (bytes / 4 > 0xFFFFFFFF) throw new Error(`${run.experiment}: buffers too large`);
  }

  const code = await assemble(
    constHeader({
      D: d,
      D4,
      N: n,
      HALF: half,
      WG: wg,
      ALGO: algo,
      BY_LOSS: byLoss,
      DATA_PER_REPLICA: data.perReplica,
    }),
    ["float.wgsl", "canary.wgsl", "logistic.wgsl", "philox.wgsl", "pq_model.wgsl"],
  );
  const layout = paramsAndStorageLayout(device, "pq_model", PARAMS_BYTES, [
    "read-only-storage",
    "read-only-storage",
    "storage",
    "storage",
    "storage",
    "storage",
    "storage",
  ]);
  const pipeline = await computePipeline(gpu, "pq_model", code, "advance", layout.pipe);

  // The reference's float64 initialisation, rounded once: both backends start identically.
  const nets: PQNet[] = [];
  const buffers: GPUBuffer[] = [];
  const { bindGroup, paramsBuf, stateBuf, flagsBuf, snapsBuf, patternBuf, readBuf } = await checked(
    gpu,
    `allocating ${run.experiment} buffers`,
    () => {
      const S = GPUBufferUsage.STORAGE, DST = GPUBufferUsage.COPY_DST;
      const SRC = GPUBufferUsage.COPY_SRC;
      const make = bufferMaker(device, buffers);
      const rows = new Float32Array(sizes.rows / 4);
      for (let row = 0; row < sets * n; row++) {
        rows.set(data.x1.subarray(row * d, row * d + d), row * dp);
      }
      const aux = new Float32Array(sizes.aux / 4);
      aux.set(data.y, 0);
      aux.set(data.x2, off.x2);
      aux.set(data.subset, off.sub);
      const weights = new Float32Array(sizes.state / 4);
      for (let r = 0; r < R; r++) {
        const net = initPQNet(
          shape,
          run.seed,
          run.firstReplica + (run.initOf?.[r] ?? r),
          run.tau0[r],
        );
        nets.push(net);
        aux.set(net.a, off.a + r * half);
        aux.set(net.b, off.b + r * half);
        // The host's float64 copy mirrors the float32 second layer (±1/√m rounded).
        net.a.set(aux.subarray(off.a + r * half, off.a + (r + 1) * half));
        net.b.set(aux.subarray(off.b + r * half, off.b + (r + 1) * half));
        for (let j = 0; j < half; j++) {
          weights.set(net.W.subarray(j * d, j * d + d), (r * half + j) * dp);
          weights.set(net.V.subarray(j * d, j * d + d), ((R + r) * half + j) * dp);
        }
        const eta1 = Math.fround(run.eta1[r]), eta2 = Math.fround(run.eta2[r]);
        aux.set([
          eta1,
          eta2,
          1 - eta1 * run.lambda[r],
          1 - eta2 * run.lambda[r],
          run.tauXi[r],
          run.tauPre[r],
          run.threshold[r],
          flipCut(run.delta[r]),
        ], off.h + 8 * r);
      }
      const rowsBuf = make("pq rows", sizes.rows, S | DST, rows);
      const auxBuf = make("pq aux", sizes.aux, S | DST, aux);
      const stateBuf = make("pq state", sizes.state, S | DST | SRC, weights);
      const flagsBuf = make("pq flags", sizes.flags, S | DST | SRC);
      const snapsBuf = make("pq snaps", sizes.snaps, S | SRC);
      const scratchBuf = make("pq scratch", sizes.scratch, S);
      const patternBuf = make("pq pattern", sizes.pattern, S | DST | SRC);
      const paramsBuf = make(
        "pq params",
        paramStride * MAX_DISPATCHES_PER_ROUND,
        GPUBufferUsage.UNIFORM | DST,
      );
      const readBuf = make(
        "pq readback",
        sizes.snaps + sizes.flags,
        GPUBufferUsage.MAP_READ | DST,
      );
      const bindGroup = device.createBindGroup({
        layout: layout.group,
        entries: [
          { binding: 0, resource: { buffer: paramsBuf, size: PARAMS_BYTES } },
          ...[rowsBuf, auxBuf, stateBuf, flagsBuf, snapsBuf, scratchBuf, patternBuf].map((
            buffer,
            i,
          ) => ({ binding: i + 1, resource: { buffer } })),
        ],
      });
      return { bindGroup, paramsBuf, stateBuf, flagsBuf, snapsBuf, patternBuf, readBuf };
    },
  );

  const nextSeq = dispatchSequence();
  const divergedAt = new Float64Array(R).fill(-1);
  const annealedAt = new Float64Array(R).fill(-1);
  const pairs = Array.from({ length: R }, (_, r) => patternPairs(data, shape, dataSetOf(data, r)));
  const patternStep = algo === 2 ? run.noiseOffStep : run.annealStep;
  const initialLr = (r: number) => (annealing ? run.eta1[r] : run.eta2[r]);

  /** Offset of `at` in [start, start + count), or NEVER. */
  function rel(at: number, start: number, count: number): number {
    return at >= start && at < start + count ? at - start : NEVER;
  }

  function runRound(round: PlannedDispatch[]) {
    const used = snapshotsIn(round);
    const snapBytes = 4 * snapFloats * used;
    const flagsBytes = 4 * (off.flips + used * R);
    const readBytes = snapBytes + flagsBytes;
    const params = encodeParams(round, paramStride, PARAMS_BYTES, (u, _f, dsp) => {
      const ce = run.checkEvery;
      u[0] = dsp.count;
      u[1] = dsp.seq;
      u[2] = dsp.slot;
      u[3] = R;
      u[4] = groupsX;
      u[5] = 2; // canary trip count
      u[6] = dsp.start % 2 ** 32;
      u[7] = run.seed >>> 0;
      u[8] = byLoss || !annealing ? NEVER : rel(run.annealStep, dsp.start, dsp.count);
      u[9] = annealing ? NEVER : rel(patternStep, dsp.start, dsp.count);
      u[10] = (ce - (dsp.start % ce)) % ce;
      u[11] = ce;
      u[12] = Math.max(0, Math.min(dsp.count, run.noiseOffStep - dsp.start));
      u[13] = off.x2;
      u[14] = off.sub;
      u[15] = off.a;
      u[16] = off.b;
      u[17] = off.h;
      u[18] = off.anneal;
      u[19] = off.flips;
      u[20] = 0; // P.zero
      u[21] = run.firstReplica;
    });
    return submitRound(
      gpu,
      `${run.experiment} advance`,
      { paramsBuf, readBuf },
      params,
      readBytes,
      (encoder) => {
        const pass = encoder.beginComputePass();
        pass.setPipeline(pipeline);
        round.forEach((_, i) => {
          pass.setBindGroup(0, bindGroup, [i * paramStride]);
          pass.dispatchWorkgroups(groupsX, groupsY);
        });
        pass.end();
        if (snapBytes) encoder.copyBufferToBuffer(snapsBuf, 0, readBuf, 0, snapBytes);
        encoder.copyBufferToBuffer(flagsBuf, 0, readBuf, snapBytes, flagsBytes);
      },
      (mapped) => ({
        snaps: new Float32Array(mapped.slice(0, snapBytes)),
        flags: new Uint32Array(mapped.slice(snapBytes, readBytes)),
        flagsF: new Float32Array(mapped.slice(snapBytes, readBytes)),
      }),
    );
  }

  /** New anneals of the round (dated as the reference does), as events for the loss rule. */
  function roundAnneals(round: PlannedDispatch[], flags: Uint32Array, flagsF: Float32Array) {
    const events: RunEvent[] = [];
    const startOf = new Map(round.map((dsp) => [dsp.seq, dsp.start]));
    for (let r = 0; r < R; r++) {
      const o = off.anneal + 4 * r;
      const start = startOf.get(flags[o]);
      if (annealedAt[r] >= 0 || start === undefined) continue;
      annealedAt[r] = start + flags[o + 1];
      if (byLoss) {
        events.push(
          decidedAtUpdate(
            annealEvent(r, annealedAt[r], flagsF[o + 2], run.threshold[r], run.firstReplica),
          ),
        );
      }
    }
    return events;
  }

  let floorNotes: RunEvent[] = [];
  function metricsAt(at: number, slot: number, snaps: Float32Array, flags: Uint32Array) {
    return Array.from({ length: R }, (_, r) => {
      if (divergedAt[r] >= 0 && divergedAt[r] <= at) return null;
      const net = nets[r];
      const base = (slot * R + r) * 2 * half * d;
      net.W.set(snaps.subarray(base, base + half * d));
      net.V.set(snaps.subarray(base + half * d, base + 2 * half * d));
      const values = pqMetrics(net, data, shape, dataSetOf(data, r), null);
      values.activation_flips = flags[off.flips + slot * R + r] / pairs[r];
      const annealedBy = annealedAt[r] >= 0 && annealedAt[r] < at;
      values.anneal_step = annealedBy ? annealedAt[r] : -1;
      values.lr = at === 0 ? initialLr(r) : annealedBy || !annealing ? run.eta2[r] : run.eta1[r];
      // The WGSL kernel keeps no copy of the anneal's weights and has no stopping rule yet:
      // the *_at_anneal and *_at_stop metrics stay NaN here (wasm and reference have them).
      phaseMetrics(values, { ...initialPhase(), annealedAt: values.anneal_step });
      run.race.observe(values, r, at, values.anneal_step, -1);
      const note = run.floorWatch?.observe(at, r, values.train_loss, values.anneal_step, false);
      if (note) floorNotes.push(note);
      return values;
    });
  }

  const clock = roundedAdvance(spec.steps, startMs, {
    rounds: (from, to, initial) =>
      splitRounds(
        planDispatches(spec, from, to, {
          nextSeq,
          initial: initial ? {} : undefined,
          cutAfter: (s) => s + maxSteps,
          fields: () => ({}),
        }),
        slots,
      ),
    async onRound(round, result) {
      const { snaps, flags, flagsF } = await runRound(round);
      result.events.push(...roundDivergences(gpu, run.experiment, round, flags, divergedAt));
      result.events.push(...roundAnneals(round, flags, flagsF));
      for (const dsp of round) {
        if (dsp.slot === NO_SNAP) continue;
        const at = dsp.start + dsp.count;
        const rows = metricsAt(at, dsp.slot, snaps, flags);
        result.snapshots.push(
          maskDiverged(at, run.metricNames, divergedAt, (r, k) => {
            const row = rows[r];
            return row ? row[run.metricNames[k]] : NaN;
          }),
        );
        result.events.push(...floorNotes);
        floorNotes = [];
      }
    },
  });

  const watches = { race: run.race, floor: run.floorWatch };
  const rows = R * half;
  if (state) {
    const s = loadPQDevice(state, shape, R, watches);
    const weights = new Float32Array(sizes.state / 4);
    padRows(weights, s.W, rows, d, dp);
    padRows(weights.subarray(rows * dp), s.V, rows, d, dp);
    // Status words, then per replica: anneal (a seq no dispatch has), -, -, pattern stored.
    const flags = new Uint32Array(off.flips);
    flags.set(restoredStatusWords(s.diverged));
    for (let r = 0; r < R; r++) {
      if (s.annealStep[r] >= 0) flags[off.anneal + 4 * r] = 0xFFFFFFFF;
      flags[off.anneal + 4 * r + 3] = s.hasPattern[r];
    }
    divergedAt.set(s.diverged);
    annealedAt.set(s.annealStep);
    await checked(gpu, `restoring ${run.experiment} state`, () => {
      writeBufferAt(gpu, stateBuf, 0, weights);
      writeBufferAt(gpu, patternBuf, 0, Uint32Array.from(s.pattern));
      writeBufferAt(gpu, flagsBuf, 0, flags);
    });
    clock.restore(state.step, state.wallMs);
  }

  /** The rate of the update before `step` (of a diverged replica: of its last update). */
  function lastLr(r: number, step: number): number {
    const last = divergedAt[r] >= 0 ? Math.min(step, divergedAt[r]) : step;
    if (last === 0) return initialLr(r);
    const annealedBy = annealedAt[r] >= 0 && annealedAt[r] <= last - 1;
    return !annealing || annealedBy ? run.eta2[r] : run.eta1[r];
  }

  async function exportState(): Promise<SessionState> {
    const [weights, pattern, flagWords] = await readBuffers(
      gpu,
      `${run.experiment} checkpoint`,
      [
        { buffer: stateBuf, size: sizes.state },
        { buffer: patternBuf, size: sizes.pattern },
        { buffer: flagsBuf, size: 4 * off.flips },
      ],
    );
    const words = new Float32Array(weights), flags = new Uint32Array(flagWords);
    const step = clock.stepOf();
    const arrays = exportPQDevice({
      W: unpadRows(words.subarray(0, rows * dp), rows, d, dp),
      V: unpadRows(words.subarray(rows * dp), rows, d, dp),
      annealStep: annealedAt.slice(),
      diverged: divergedAt.slice(),
      lr: Float64Array.from({ length: R }, (_, r) => lastLr(r, step)),
      pattern: Uint8Array.from(new Uint32Array(pattern)),
      hasPattern: Uint8Array.from({ length: R }, (_, r) => flags[off.anneal + 4 * r + 3]),
    }, watches);
    return newSessionState(spec, "webgpu", step, clock.elapsedMs(), arrays);
  }

  return serialisedGpuSession(
    gpu,
    run.experiment,
    clock.stepOf,
    clock.advanceTo,
    buffers,
    exportState,
  );
}

/** The stopping rule runs on the CPU backends only: a clear refusal instead of ignoring it. */
function refuseStop(spec: RunSpec): void {
  if (spec.params.stop === "loss") {
    throw new Error(
      "params.stop = loss (the stopping rule) runs on the wasm and reference backends only; " +
        "choose backend wasm or stop = off",
    );
  }
}

export function openLargeLrGpu(
  spec: RunSpec,
  options: PQGpuOptions = {},
  state?: SessionState,
): Promise<KernelSession> {
  refuseStop(spec);
  const prep = prepareLargeLr(spec);
  return openPQGpu(spec, {
    experiment: "large-lr",
    shape: prep.shape,
    data: prep.data,
    replicas: prep.replicas,
    seed: prep.seed,
    firstReplica: prep.firstReplica,
    kernelAlgo: prep.algoCode,
    tau0: prep.tau0,
    eta1: prep.eta1,
    eta2: prep.eta2,
    lambda: prep.lambda,
    tauXi: prep.tauXi,
    tauPre: prep.tauPre,
    delta: new Float64Array(prep.replicas),
    threshold: prep.threshold,
    anneal: prep.anneal,
    annealStep: prep.annealStep,
    checkEvery: 1,
    noiseOffStep: prep.noiseOffStep,
    metricNames: LARGE_LR_METRICS.map((m) => m.name),
    floorWatch: largeLrFloorWatch(prep, spec),
    race: largeLrRaceWatch(prep, spec),
    initOf: prep.initOf,
  }, { ...options, state });
}

export function openLabelNoiseGpu(
  spec: RunSpec,
  options: PQGpuOptions = {},
  state?: SessionState,
): Promise<KernelSession> {
  refuseStop(spec);
  const prep = prepareLabelNoise(spec);
  const R = prep.replicas;
  return openPQGpu(spec, {
    experiment: "label-noise-anneal",
    shape: prep.shape,
    data: prep.data,
    replicas: R,
    seed: prep.seed,
    firstReplica: prep.firstReplica,
    kernelAlgo: LABEL_NOISE_CODE_OFFSET + prep.algoCode,
    tau0: prep.tau0,
    eta1: prep.eta1,
    eta2: prep.eta2,
    lambda: new Float64Array(R),
    tauXi: new Float64Array(R),
    tauPre: new Float64Array(R),
    delta: prep.delta,
    threshold: prep.threshold,
    anneal: prep.anneal,
    annealStep: prep.annealStep,
    checkEvery: prep.checkEvery,
    noiseOffStep: Number.MAX_SAFE_INTEGER,
    metricNames: LABEL_NOISE_METRICS.map((m) => m.name),
    race: labelNoiseRaceWatch(prep, spec),
  }, { ...options, state });
}
