/**
 * KernelSessions for `large-lr` and `label-noise-anneal` on the wasm kernel
 * (kernels-as/pq_model.ts). The kernel trains; this side copies the prepared data and the
 * float64 initialisation (rounded to float32) in once, runs the kernel up to each snapshot
 * step, and evaluates the metrics in float64 from the float32 weights with the reference's
 * own metric code (pqMetrics), so formulas exist once. Anneals the kernel decided become
 * phase_change events; non-finite replicas become replica_diverged events, as in
 * server/engine/reference.ts.
 */
import type {
  AdvanceResult,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
  Snapshot,
} from "../../experiments/types.ts";
import {
  dataSetOf,
  initPQNet,
  isPlane,
  type PQData,
  pqMetrics,
  type PQNet,
  type PQShape,
  trackNoisePart,
  usesRays,
  x1IsZero,
} from "../../experiments/pq_model.ts";
import {
  annealEvent,
  type AnnealRule,
  annealValuesEvent,
  initialPhase,
  phaseMetrics,
  type PhaseState,
  stopEvent,
} from "../../experiments/pq_anneal.ts";
import {
  LARGE_LR_METRICS,
  largeLrFloorWatch,
  largeLrRaceWatch,
  prepareLargeLr,
} from "../../experiments/large_lr.ts";
import type { FloorWatch } from "../../experiments/pq_floor.ts";
import type { RaceWatch } from "../../experiments/pq_race.ts";
import {
  LABEL_NOISE_METRICS,
  labelNoiseRaceWatch,
  prepareLabelNoise,
} from "../../experiments/label_noise_anneal.ts";
import { isSnapshotStep, nextSnapshotStep, StepClock } from "../snapshots.ts";
import { decidedAtUpdate, eventOrder, settled } from "../session_results.ts";
import { wasmAdapterOf } from "./builds.ts";
import { checkSessionState, newSessionState } from "../session_state.ts";
import { exportPQKernel, type PQKernelView, restorePQKernel } from "../../experiments/pq_state.ts";

/** The exports of build/wasm/pq_model.wasm (pointers are byte offsets into memory). */
interface PQExports {
  memory: WebAssembly.Memory;
  setup(
    d: number,
    n: number,
    halfP: number,
    halfQ: number,
    replicas: number,
    sets: number,
    algo: number,
    seed: number,
  ): void;
  setFirstReplica(first: number): void;
  setBlocks(x1Zero: number, plane: number, rays: number, rF32: number): void;
  setSchedule(byLoss: number, annealStep: number, checkEvery: number, noiseOff: number): void;
  paddedDim(): number;
  x1Ptr(): number;
  x2Ptr(): number;
  yPtr(): number;
  subsetPtr(): number;
  aPtr(): number;
  bPtr(): number;
  wPtr(): number;
  vPtr(): number;
  wnPtr(): number;
  hyperPtr(): number;
  statePtr(): number;
  patternPtr(): number;
  rayOrderPtr(): number;
  rayStartPtr(): number;
  atAnnealPtr(): number;
  advance(from: number, count: number): void;
}

/** Kernel algorithm codes (kernels-as/pq_model.ts): large-lr 0..2, label-noise 3..5. */
const LABEL_NOISE_CODE_OFFSET = 3;
const MAX_TOTAL_BYTES = 3.5 * 2 ** 30;

/** Everything the common session needs from either experiment's prepared run. */
interface PQRun {
  shape: PQShape;
  data: PQData;
  replicas: number;
  seed: number;
  /** Global index of replica 0 (RunSpec.firstReplica): keys and data seeds use it + r. */
  firstReplica: number;
  kernelAlgo: number;
  tau0: Float64Array;
  /** Rows of 8 per replica: η1, η2, λ, τ_ξ, τ_pre, δ, threshold, stop loss (−1: never). */
  hyper: Float64Array;
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

function checkMemory(shape: PQShape, R: number, sets: number): void {
  const dp = Math.ceil(shape.d / 4) * 4;
  // The Q block alone keeps no x1 rows (kernels-as/pq_model.ts setup).
  const x1Row = x1IsZero(shape) ? 0 : dp;
  const bytes = sets * shape.n * (x1Row + 4) * 4 + 2 * R * shape.m * dp * 4 +
    R * shape.halfP * dp * 4 +
    R * shape.n * shape.m + 2 * Math.max(shape.halfP, shape.halfQ) * dp * 4;
  if (bytes > MAX_TOTAL_BYTES) {
    throw new Error(
      `this P/Q run needs ${(bytes / 2 ** 30).toFixed(1)} GiB of wasm memory (3.5 GiB at most): ` +
        `use fewer replicas, data=shared, or a smaller d, m or κ²`,
    );
  }
}

function openPQSession(
  spec: RunSpec,
  instance: WebAssembly.Instance,
  run: PQRun,
  checkpoint?: SessionState,
): KernelSession {
  const { shape, data, replicas: R } = run;
  const { d, n, halfP, halfQ } = shape;
  checkMemory(shape, R, data.sets);
  let exports: PQExports | null = instance.exports as unknown as PQExports;
  const kernel = (): PQExports => {
    if (!exports) throw new Error(`the wasm ${spec.experiment} session was disposed`);
    return exports;
  };
  const k = kernel();
  // Before setup: it sizes X1 by the mode.
  k.setBlocks(x1IsZero(shape) ? 1 : 0, isPlane(shape) ? 1 : 0, usesRays(shape) ? 1 : 0, data.rF32);
  k.setup(d, n, halfP, halfQ, R, data.sets, run.kernelAlgo, run.seed >>> 0);
  k.setFirstReplica(run.firstReplica >>> 0);
  k.setSchedule(run.anneal === "loss" ? 1 : 0, run.annealStep, run.checkEvery, run.noiseOffStep);
  const dp = k.paddedDim();
  // Views are made per use: they would detach if the memory grew after they were taken.
  const f32 = (ptr: number, length: number) =>
    new Float32Array(kernel().memory.buffer, ptr, length);
  const X1 = f32(k.x1Ptr(), data.x1.length ? data.sets * n * dp : 0);
  for (let row = 0; row < (data.x1.length ? data.sets * n : 0); row++) {
    X1.set(data.x1.subarray(row * d, row * d + d), row * dp);
  }
  f32(k.x2Ptr(), data.sets * n * 2).set(data.x2);
  if (data.rayOrder) {
    new Int32Array(k.memory.buffer, k.rayOrderPtr(), data.sets * n).set(data.rayOrder);
    new Int32Array(k.memory.buffer, k.rayStartPtr(), data.sets * 4).set(data.rayStart!);
  }
  f32(k.yPtr(), data.sets * n).set(data.y);
  new Int32Array(k.memory.buffer, k.subsetPtr(), data.sets * n).set(data.subset);
  new Float64Array(k.memory.buffer, k.hyperPtr(), 8 * R).set(run.hyper);
  // The reference's float64 initialisation, rounded once: both backends start identically.
  const nets: PQNet[] = [];
  for (let r = 0; r < R; r++) {
    const net = initPQNet(shape, run.seed, run.firstReplica + (run.initOf?.[r] ?? r), run.tau0[r]);
    nets.push(net);
    f32(k.aPtr() + r * halfP * 4, halfP).set(net.a);
    f32(k.bPtr() + r * halfQ * 4, halfQ).set(net.b);
    const W = f32(k.wPtr() + r * halfP * dp * 4, halfP * dp);
    const V = f32(k.vPtr() + r * halfQ * dp * 4, halfQ * dp);
    for (let j = 0; j < halfP; j++) W.set(net.W.subarray(j * d, j * d + d), j * dp);
    // The noise part starts at W_0 (trackNoisePart).
    f32(k.wnPtr() + r * halfP * dp * 4, halfP * dp).set(W);
    trackNoisePart(net);
    for (let j = 0; j < halfQ; j++) V.set(net.V.subarray(j * d, j * d + d), j * dp);
    // The host's float64 copy mirrors the float32 second layer (±1/√m_p, ±1/√m_q rounded).
    net.a.set(f32(k.aPtr() + r * halfP * 4, halfP));
    net.b.set(f32(k.bPtr() + r * halfQ * 4, halfQ));
  }
  // Kernel state rows of 8: anneal step, lr, diverged step, anneal loss, stop step, stop loss.
  const state = () => new Float64Array(kernel().memory.buffer, kernel().statePtr(), 8 * R);
  const initialLr = (r: number) =>
    run.kernelAlgo === 1 || run.kernelAlgo === 2 || run.kernelAlgo === 4
      ? run.hyper[8 * r + 1]
      : run.hyper[8 * r];
  const reportedDiverged = new Uint8Array(R);
  const phases: PhaseState[] = Array.from({ length: R }, initialPhase);
  let floorNotes: RunEvent[] = [];
  const patternBytes = n * shape.m;
  const plane = isPlane(shape);

  /** Copies replica r's float32 weights into its float64 network for the metric code. */
  function syncNet(r: number, atAnneal = false): PQNet {
    const net = nets[r];
    const blockW = halfP * dp * 4, blockV = halfQ * dp * 4;
    // The anneal copy holds replica r's W rows then its V rows (kernels-as/pq_model.ts).
    const at = kernel().atAnnealPtr() + r * (blockW + blockV);
    const W = f32(atAnneal ? at : kernel().wPtr() + r * blockW, halfP * dp);
    const V = f32(atAnneal ? at + blockW : kernel().vPtr() + r * blockV, halfQ * dp);
    if (plane) {
      // The plane's metrics read V's columns 0, 1 only (the others are NaN metrics there):
      // O(m_q) per snapshot instead of O((m_p + m_q)·d).
      for (let j = 0; j < halfQ; j++) {
        net.V[j * d] = V[j * dp];
        net.V[j * d + 1] = V[j * dp + 1];
      }
      return net;
    }
    for (let j = 0; j < halfP; j++) {
      for (let c = 0; c < d; c++) net.W[j * d + c] = W[j * dp + c];
    }
    const Wn = f32(kernel().wnPtr() + r * blockW, halfP * dp);
    for (let j = 0; j < halfP; j++) {
      for (let c = 0; c < d; c++) net.Wn![j * d + c] = Wn[j * dp + c];
    }
    for (let j = 0; j < halfQ; j++) {
      for (let c = 0; c < d; c++) net.V[j * d + c] = V[j * dp + c];
    }
    return net;
  }

  /** Whether the kernel stored replica r's reference activation pattern yet. */
  function patternOf(r: number, at: number): Uint8Array | null {
    const annealedAt = state()[8 * r];
    const algo = run.kernelAlgo;
    const annealing = algo === 0 || algo === 3 || algo === 5;
    const patternStep = algo === 2 ? run.noiseOffStep : run.annealStep;
    const stored = annealing ? annealedAt >= 0 : at > patternStep;
    if (!stored) return null;
    return new Uint8Array(
      kernel().memory.buffer,
      kernel().patternPtr() + r * patternBytes,
      patternBytes,
    );
  }

  function snapshot(at: number): Snapshot {
    const metrics: Record<string, Float32Array> = {};
    for (const name of run.metricNames) metrics[name] = new Float32Array(R);
    const st = state();
    for (let r = 0; r < R; r++) {
      const diverged = st[8 * r + 2] >= 0;
      const set = dataSetOf(data, r);
      const values = diverged ? null : pqMetrics(syncNet(r), data, shape, set, patternOf(r, at));
      if (values) {
        values.lr = at === 0 ? initialLr(r) : st[8 * r + 1];
        values.anneal_step = st[8 * r];
        phaseMetrics(values, phases[r]);
        run.race.observe(values, r, at, st[8 * r], st[8 * r + 4]);
        const stopped = st[8 * r + 4] >= 0;
        const note = run.floorWatch?.observe(at, r, values.train_loss, st[8 * r], stopped);
        if (note) floorNotes.push(note);
      }
      for (const name of run.metricNames) metrics[name][r] = values ? values[name] : NaN;
    }
    return { step: at, wallMs: 0, metrics };
  }

  function newEvents(): RunEvent[] {
    const events: RunEvent[] = [];
    const st = state();
    for (let r = 0; r < R; r++) {
      const phase = phases[r];
      if (phase.annealedAt < 0 && st[8 * r] >= 0) {
        phase.annealedAt = st[8 * r];
        if (run.anneal === "loss") {
          events.push(
            decidedAtUpdate(
              annealEvent(r, st[8 * r], st[8 * r + 3], run.hyper[8 * r + 6], run.firstReplica),
            ),
          );
        }
        const set = dataSetOf(data, r);
        phase.atAnneal = pqMetrics(syncNet(r, true), data, shape, set, null);
        events.push(
          decidedAtUpdate(annealValuesEvent(r, phase.annealedAt, phase.atAnneal, run.firstReplica)),
        );
      }
      if (phase.stoppedAt < 0 && st[8 * r + 4] >= 0) {
        // A stopped replica is frozen: its weights now are those of its stop step.
        phase.stoppedAt = st[8 * r + 4];
        const set = dataSetOf(data, r);
        phase.atStop = pqMetrics(syncNet(r), data, shape, set, patternOf(r, phase.stoppedAt + 1));
        events.push(decidedAtUpdate(
          stopEvent(
            r,
            phase.stoppedAt,
            st[8 * r + 5],
            run.hyper[8 * r + 7],
            phase.atStop,
            run.firstReplica,
          ),
        ));
      }
      if (!reportedDiverged[r] && st[8 * r + 2] >= 0) {
        reportedDiverged[r] = 1;
        events.push({ type: "replica_diverged", step: st[8 * r + 2], replica: r });
      }
    }
    return events.sort(eventOrder);
  }

  const clock = new StepClock(spec.steps);
  const watches = { race: run.race, floor: run.floorWatch };
  // Checkpoints: server/experiments/pq_state.ts.
  const kernelView: PQKernelView = {
    shape,
    replicas: R,
    dp,
    W: () => f32(kernel().wPtr(), R * halfP * dp),
    V: () => f32(kernel().vPtr(), R * halfQ * dp),
    Wn: () => f32(kernel().wnPtr(), R * halfP * dp),
    atAnneal: () => f32(kernel().atAnnealPtr(), R * shape.m * dp),
    state,
    pattern: () => new Uint8Array(kernel().memory.buffer, kernel().patternPtr(), R * patternBytes),
    hasPattern: (r) => patternOf(r, clock.step) !== null,
  };
  if (checkpoint) {
    checkSessionState(checkpoint, spec);
    restorePQKernel(kernelView, checkpoint, phases, watches);
    // Divergences up to a checkpoint were reported before it was written.
    const st = state();
    for (let r = 0; r < R; r++) reportedDiverged[r] = st[8 * r + 2] >= 0 ? 1 : 0;
    clock.restore(checkpoint.step, checkpoint.wallMs);
  }

  function advanceNow(target: number): AdvanceResult {
    return clock.advance(target, () => snapshot(0), (target, result) => {
      while (clock.step < target) {
        const step = clock.step;
        const end = Math.min(target, nextSnapshotStep(step, spec.every, spec.steps));
        kernel().advance(step, end - step);
        clock.step = end;
        result.events.push(...newEvents());
        if (isSnapshotStep(end, spec.every, spec.steps)) {
          result.snapshots.push(snapshot(end));
          result.events.push(...floorNotes);
          floorNotes = [];
        }
      }
    });
  }

  return {
    backend: "wasm",
    adapter: wasmAdapterOf(instance),
    get step() {
      return clock.step;
    },
    advance(target: number): Promise<AdvanceResult> {
      return settled(() => advanceNow(target));
    },
    exportState() {
      return settled(() =>
        newSessionState(
          spec,
          "wasm",
          clock.step,
          clock.elapsedMs,
          exportPQKernel(kernelView, phases, watches),
        )
      );
    },
    dispose() {
      exports = null;
    },
  };
}

export function openLargeLrSession(
  spec: RunSpec,
  instance: WebAssembly.Instance,
  checkpoint?: SessionState,
): KernelSession {
  const prep = prepareLargeLr(spec);
  const R = prep.replicas;
  const hyper = new Float64Array(8 * R);
  for (let r = 0; r < R; r++) {
    hyper.set(
      [
        prep.eta1[r],
        prep.eta2[r],
        prep.lambda[r],
        prep.tauXi[r],
        prep.tauPre[r],
        0,
        prep.threshold[r],
        prep.stopAt[r],
      ],
      8 * r,
    );
  }
  return openPQSession(spec, instance, {
    shape: prep.shape,
    data: prep.data,
    replicas: R,
    seed: prep.seed,
    firstReplica: prep.firstReplica,
    kernelAlgo: prep.algoCode,
    tau0: prep.tau0,
    hyper,
    anneal: prep.anneal,
    annealStep: prep.annealStep,
    checkEvery: 1,
    noiseOffStep: prep.noiseOffStep,
    metricNames: LARGE_LR_METRICS.map((m) => m.name),
    floorWatch: largeLrFloorWatch(prep, spec),
    race: largeLrRaceWatch(prep, spec),
    initOf: prep.initOf,
  }, checkpoint);
}

export function openLabelNoiseSession(
  spec: RunSpec,
  instance: WebAssembly.Instance,
  checkpoint?: SessionState,
): KernelSession {
  const prep = prepareLabelNoise(spec);
  const R = prep.replicas;
  const hyper = new Float64Array(8 * R);
  for (let r = 0; r < R; r++) {
    hyper.set(
      [prep.eta1[r], prep.eta2[r], 0, 0, 0, prep.delta[r], prep.threshold[r], prep.stopAt[r]],
      8 * r,
    );
  }
  return openPQSession(spec, instance, {
    shape: prep.shape,
    data: prep.data,
    replicas: R,
    seed: prep.seed,
    firstReplica: prep.firstReplica,
    kernelAlgo: LABEL_NOISE_CODE_OFFSET + prep.algoCode,
    tau0: prep.tau0,
    hyper,
    anneal: prep.anneal,
    annealStep: prep.annealStep,
    checkEvery: prep.checkEvery,
    noiseOffStep: Number.MAX_SAFE_INTEGER,
    metricNames: LABEL_NOISE_METRICS.map((m) => m.name),
    race: labelNoiseRaceWatch(prep, spec),
  }, checkpoint);
}
