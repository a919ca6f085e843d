/**
 * Towards Explaining the Regularization Effect of Initial Large Learning Rate in Training
 * Neural Networks (Li, Wei, Ma; NeurIPS 2019, arXiv 1907.04595), Section 3 and App. F.1:
 * full-batch gradient descent with isotropic Gaussian gradient noise and weight decay on the
 * P/Q mixture (server/experiments/pq_model.ts). A large learning rate η1 keeps the noise
 * part of the weights at std τ0 (eq. 3.3), which keeps re-randomising the activation
 * patterns on the Q rays: the network learns P from every example that carries it, and only
 * memorises Q after the anneal to η2. A small learning rate throughout memorises Q first and
 * learns P from the ≈ d/2 P-only examples alone. Notes: ../shared/papers/seed-001-initial-
 * large-lr.md.
 *
 * Update (eqs. 3.1, 3.2), on both blocks U = [W; V]:
 *   U_{t+1} = (1 − γ_t λ) U_t − γ_t (∇_U L̂(U_t) + ξ_t),   ξ_t ~ N(0, τ_ξ² I),
 *   τ_ξ = xi_scale·τ0·√(λ(2 − η1λ)/η1)   (stationarity (1 − η1λ)²τ0² + η1²τ_ξ² = τ0², eq. 3.3)
 * with γ_t = η1 then η2 (large-then-small), η2 throughout (small), or η2 throughout with
 * pre-activation noise Ξ_t ~ N(0, τ_pre² I_m), shared by all examples of the step, inside
 * both the loss and the gradient until noise_off_step (small-preact-noise, App. F.1).
 *
 * Random draws at update t of replica k (key (seed, k), counter step t; pq_model.ts has the
 * data and initialisation streams):
 *   ξ on W: normals(seed, k, t, STREAM_XI_W, (m_p/2)·d), row-major like W; ξ on V:
 *      normals(seed, k, t, STREAM_XI_V, (m_q/2)·d). τ_ξ (eq. 3.3) does not depend on m.
 *   Ξ: normals(seed, k, t, STREAM_PREACT, m_p/2 + m_q/2): the m_p/2 units of W, then V's
 *      (small-preact-noise only, t < noise_off_step).
 */
import { normals } from "../rng/philox.ts";
import { steppedReferenceSession } from "../engine/reference.ts";
import { isSnapshotStep } from "../engine/snapshots.ts";
import { FloorWatch } from "./pq_floor.ts";
import { RACE_METRICS, raceParams, RaceWatch } from "./pq_race.ts";
import { loadPQReplicas, savePQReplicas } from "./pq_state.ts";
import { type ParamSchema, perReplica, SpecError } from "./schema.ts";
import type {
  ExperimentDefinition,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
} from "./types.ts";
import {
  activationPattern,
  annealThreshold,
  dataSetOf,
  fullBatchGradient,
  generateRunData,
  initPQNet,
  isPlane,
  planeUpdate,
  type PQData,
  pqEstimateBytes,
  pqMetrics,
  pqMetricSpecs,
  pqModelParams,
  type PQNet,
  pqReplicaMetrics,
  type PQShape,
  pqShape,
  qFraction,
  STREAM_PREACT,
  STREAM_XI_V,
  STREAM_XI_W,
  trackNoisePart,
  trainLoss,
} from "./pq_model.ts";
import {
  ANNEAL_METRICS,
  annealEvent,
  annealParams,
  type AnnealRule,
  annealValuesEvent,
  initialPhase,
  PHASE_METRICS,
  type PhaseState,
  plannedAnnealEvent,
  shouldAnneal,
  shouldStop,
  stopEvent,
  stopParams,
  type StopRule,
  stopThreshold,
} from "./pq_anneal.ts";

export const LARGE_LR_ALGOS = ["large-then-small", "small", "small-preact-noise"] as const;
export type LargeLrAlgo = typeof LARGE_LR_ALGOS[number];
export const LARGE_LR_ALGO_CODE: Record<LargeLrAlgo, number> = {
  "large-then-small": 0,
  "small": 1,
  "small-preact-noise": 2,
};

const SWEEP = "lab sweep, docs/experiments/large-lr.md";

export const largeLrParams: ParamSchema = {
  algo: {
    kind: "enum",
    values: [...LARGE_LR_ALGOS],
    default: "large-then-small",
    doc: "training algorithm (all: full-batch GD + Gaussian gradient noise + weight decay)",
    valueDocs: {
      "large-then-small": "γ = η1 until the anneal (loss threshold or step), then η2 (Algorithm 1)",
      "small": "γ = η2 throughout, same τ0 and τ_ξ (Algorithm 2)",
      "small-preact-noise":
        "γ = η2 with pre-activation noise N(0, τ_pre²) until noise_off_step (App. F.1)",
    },
    source: "Section 3, App. F.1",
  },
  ...pqModelParams({
    d: 64,
    kappaSq: 0.2,
    q0: 0.6,
    rScale: 1,
    m: 256,
    tau0: 5e-4,
    nTest: 1000,
    seed: 1,
    sweepSource: SWEEP,
  }),
  ...annealParams({
    eta1: 40,
    eta2: 0.5,
    epsilon1: 0.05,
    annealStep: 1000,
    annealRule: "loss",
    annealAlgos: ["large-then-small"],
    source: SWEEP,
    // Algorithm 2 keeps "the same τ0 and τ_ξ as Algorithm 1": τ_ξ is set by η1 everywhere.
    eta1Doc: "; it also sets τ_ξ for every algorithm (eq. 3.3)",
    eta1AppliesTo: [...LARGE_LR_ALGOS],
  }),
  ...stopParams({ stopAlgos: [...LARGE_LR_ALGOS] }),
  ...raceParams,
  lambda_scale: {
    kind: "number",
    default: 0.01,
    min: 0,
    max: 1e6,
    perReplica: true,
    log: true,
    doc: "weight decay λ = lambda_scale·d^(−5/4) on W and V",
    source:
      "Assumption 3.1 (λ = d^(−5/4), lambda_scale = 1); 0.01 chosen so that the loss floor lies below the anneal threshold: at lambda_scale = 1 and d = 64 the loss settles at ≈ 0.64 > q·log 2 + ε1 ≈ 0.47 and the anneal never fires (the run says so in a note; docs/experiments/large-lr.md)",
  },
  xi_scale: {
    kind: "number",
    default: 1,
    min: 0,
    max: 1e3,
    perReplica: true,
    doc: "gradient-noise std τ_ξ = xi_scale·τ0·√(λ(2 − η1λ)/η1); 1 is the stationarity condition",
    source: "Assumption 3.1, eq. 3.3",
  },
  preact_scale: {
    kind: "number",
    default: 1,
    min: 0,
    max: 1e3,
    perReplica: true,
    doc: "pre-activation noise std τ_pre = preact_scale·τ0",
    source: "App. F.1 (τ_t = τ0)",
    appliesTo: ["small-preact-noise"],
  },
  noise_pairs: {
    kind: "enum",
    values: ["off", "on"],
    default: "off",
    doc:
      "on: replicas R/2..R−1 repeat replicas 0..R/2−1 (same data, initialisation, second layer) without the algorithm's noise (τ_ξ = τ_pre = 0), so one run gives Q's loss with and without the noise at equal η-time",
    source:
      "issue 14 (the noise-blocking measure: two replica groups, same seeds); the one setting of the search where η1's noise blocks Q (m = 1024, τ0 = 1.5, λ = d^(−5/4), r = 0.88; docs/experiments/large-lr.md table 4) is the preset large-lr-noise-blocks-q",
  },
  noise_off_step: {
    kind: "int",
    default: 1000,
    min: 0,
    max: 1e10,
    doc: "step from which the pre-activation noise is off",
    source: `App. F.1 (τ_t = 0 after Õ(d/(η1 ε1)) steps); ${SWEEP}`,
    appliesTo: ["small-preact-noise"],
  },
};

export interface LargeLrPrepared {
  algo: LargeLrAlgo;
  algoCode: number;
  shape: PQShape;
  replicas: number;
  data: PQData;
  seed: number;
  /** Global index of replica 0 (RunSpec.firstReplica): keys and data seeds use firstReplica + k. */
  firstReplica: number;
  tau0: Float64Array;
  eta1: Float64Array;
  eta2: Float64Array;
  /** λ per replica (absolute). */
  lambda: Float64Array;
  /** τ_ξ per replica (absolute). */
  tauXi: Float64Array;
  /** τ_pre per replica (absolute). */
  tauPre: Float64Array;
  /** The replica whose data, initialisation and second layer replica k uses (noise pairs). */
  initOf: Int32Array;
  anneal: AnnealRule;
  annealStep: number;
  epsilon1: number;
  /** q·log 2 + ε1 per replica (its data set's empirical q). */
  threshold: Float64Array;
  /** Stop loss per replica: ε2 or ε′2 (−1: stop=off). */
  stopAt: Float64Array;
  stop: StopRule;
  noiseOffStep: number;
}

/** τ_ξ from the stationarity condition (1 − η1λ)²τ0² + η1²τ_ξ² = τ0² (eq. 3.3). */
export function stationaryTauXi(tau0: number, eta1: number, lambda: number): number {
  if (eta1 <= 0) return 0;
  return tau0 * Math.sqrt(Math.max(0, lambda * (2 - eta1 * lambda) / eta1));
}

/** Whether the run has noise pairs; refuses an odd number of replicas for them. */
function checkNoisePairs(spec: RunSpec): boolean {
  const pairs = spec.params.noise_pairs === "on";
  // A twin is replica k + R/2 of the whole run: a shard (firstReplica > 0) cannot find it.
  if (pairs && (spec.firstReplica ?? 0) > 0) {
    throw new SpecError([{
      field: "firstReplica",
      message: "noise_pairs=on pairs replica k with k + R/2 of the whole run: it cannot be sharded",
    }]);
  }
  if (pairs && spec.replicas % 2 !== 0) {
    throw new SpecError([{
      field: "params.noise_pairs",
      message: `needs an even number of replicas (two groups of R/2), got ${spec.replicas}`,
    }]);
  }
  return pairs;
}

export function prepareLargeLr(spec: RunSpec): LargeLrPrepared {
  const p = spec.params;
  const R = spec.replicas;
  const shape = pqShape(p);
  const perReplicaData = p.data === "per-replica";
  const seed = p.seed as number;
  const pairs = checkNoisePairs(spec);
  const firstReplica = spec.firstReplica ?? 0;
  const initOf = Int32Array.from({ length: R }, (_, k) => pairs && k >= R / 2 ? k - R / 2 : k);
  const data = perReplicaData
    ? generateRunData(shape, seed, R, (s) => firstReplica + initOf[s])
    : generateRunData(shape, seed, 1);
  const tau0 = perReplica(p.tau0, R), eta1 = perReplica(p.eta1, R), eta2 = perReplica(p.eta2, R);
  const lambdaScale = perReplica(p.lambda_scale, R), xiScale = perReplica(p.xi_scale, R);
  const preScale = perReplica(p.preact_scale, R);
  const lambda = new Float64Array(R), tauXi = new Float64Array(R), tauPre = new Float64Array(R);
  const threshold = new Float64Array(R), stopAt = new Float64Array(R);
  const algo = p.algo as LargeLrAlgo;
  for (let k = 0; k < R; k++) {
    lambda[k] = lambdaScale[k] * Math.pow(shape.d, -1.25);
    const quiet = initOf[k] !== k; // the noise-free twin of a noise pair
    tauXi[k] = quiet ? 0 : xiScale[k] * stationaryTauXi(tau0[k], eta1[k], lambda[k]);
    tauPre[k] = quiet ? 0 : preScale[k] * tau0[k];
    const set = perReplicaData ? k : 0;
    threshold[k] = annealThreshold(data, shape, set, p.epsilon1 as number);
    stopAt[k] = stopThreshold(
      p.stop as StopRule,
      qFraction(data, shape, set),
      p.epsilon1 as number,
      algo === "large-then-small",
      p.stop_scale as number,
    );
  }
  return {
    algo,
    algoCode: LARGE_LR_ALGO_CODE[algo],
    shape,
    replicas: R,
    data,
    seed,
    firstReplica,
    tau0,
    eta1,
    eta2,
    lambda,
    tauXi,
    tauPre,
    initOf,
    anneal: p.anneal as AnnealRule,
    annealStep: p.anneal_step as number,
    epsilon1: p.epsilon1 as number,
    threshold,
    stopAt,
    stop: p.stop as StopRule,
    noiseOffStep: p.noise_off_step as number,
  };
}

/** The step at which algorithms without an anneal take the reference activation pattern. */
export function patternStep(prep: LargeLrPrepared): number {
  return prep.algo === "small-preact-noise" ? prep.noiseOffStep : prep.annealStep;
}

/** A replica's state between steps (its anneal and stop in PhaseState). */
export interface LargeLrReplica extends PhaseState {
  net: PQNet;
  gW: Float64Array;
  gV: Float64Array;
  pattern: Uint8Array | null;
  lr: number;
}

export function initLargeLrReplica(prep: LargeLrPrepared, replica: number): LargeLrReplica {
  const net = initPQNet(
    prep.shape,
    prep.seed,
    prep.firstReplica + prep.initOf[replica],
    prep.tau0[replica],
  );
  trackNoisePart(net);
  return {
    net,
    gW: new Float64Array(net.W.length),
    gV: new Float64Array(net.V.length),
    ...initialPhase(),
    pattern: null,
    lr: prep.algo === "large-then-small" ? prep.eta1[replica] : prep.eta2[replica],
  };
}

/**
 * Update t of one replica, in place, as eqs. 3.1–3.2 write it. Returns the events of this
 * step (anneal, stop) and the (possibly noisy) training loss at U_t. A stopped replica does
 * not move (loss 0).
 */
export function largeLrStep(
  prep: LargeLrPrepared,
  state: LargeLrReplica,
  replica: number,
  t: number,
): { loss: number; events: RunEvent[] } {
  const { shape, data } = prep;
  const { net, gW, gV } = state;
  const set = dataSetOf(data, replica);
  const events: RunEvent[] = [];
  if (state.stoppedAt >= 0) return { loss: 0, events };
  const { halfP, halfQ, d, m } = shape;
  let preact: Float64Array | null = null;
  if (prep.algo === "small-preact-noise" && t < prep.noiseOffStep) {
    preact = normals(prep.seed, prep.firstReplica + replica, t, STREAM_PREACT, m);
    for (let j = 0; j < m; j++) preact[j] *= prep.tauPre[replica];
  }
  const loss = fullBatchGradient(net, data, shape, set, preact, gW, gV);
  const annealing = prep.algo === "large-then-small";
  if (annealing) {
    if (
      state.annealedAt < 0 &&
      shouldAnneal(prep.anneal, t, prep.annealStep, 1, () => loss, prep.threshold[replica])
    ) {
      state.annealedAt = t;
      state.pattern = activationPattern(net, data, shape, set);
      state.atAnneal = pqMetrics(net, data, shape, set, null);
      if (prep.anneal === "loss") {
        events.push(annealEvent(replica, t, loss, prep.threshold[replica], prep.firstReplica));
      }
      events.push(annealValuesEvent(replica, t, state.atAnneal, prep.firstReplica));
    }
  } else if (t === patternStep(prep)) {
    state.pattern = activationPattern(net, data, shape, set);
  }
  // The stop compares the clean loss: with pre-activation noise on, the batch loss is noisy.
  let clean = preact ? NaN : loss;
  const cleanLoss = () => Number.isNaN(clean) ? (clean = trainLoss(net, data, shape, set)) : clean;
  if (shouldStop(prep.stopAt[replica], !annealing || state.annealedAt >= 0, t, 1, cleanLoss)) {
    state.stoppedAt = t;
    state.atStop = pqMetrics(net, data, shape, set, state.pattern);
    events.push(
      stopEvent(replica, t, cleanLoss(), prep.stopAt[replica], state.atStop, prep.firstReplica),
    );
    return { loss, events };
  }
  const gamma = prep.algo === "large-then-small" && state.annealedAt < 0
    ? prep.eta1[replica]
    : prep.eta2[replica];
  state.lr = gamma;
  const decay = 1 - gamma * prep.lambda[replica];
  const tauXi = prep.tauXi[replica];
  if (isPlane(shape)) {
    planeUpdate(net, gV, decay, gamma, tauXi, prep.seed, prep.firstReplica + replica, t);
    return { loss, events };
  }
  const xiW = normals(prep.seed, prep.firstReplica + replica, t, STREAM_XI_W, halfP * d);
  const xiV = normals(prep.seed, prep.firstReplica + replica, t, STREAM_XI_V, halfQ * d);
  for (let k = 0; k < halfP * d; k++) {
    net.W[k] = decay * net.W[k] - gamma * (gW[k] + tauXi * xiW[k]);
  }
  for (let k = 0; k < halfQ * d; k++) {
    net.V[k] = decay * net.V[k] - gamma * (gV[k] + tauXi * xiV[k]);
  }
  // The noise part of W (eq. 3.4): the same recursion without the gradient.
  const Wn = net.Wn!;
  for (let k = 0; k < halfP * d; k++) Wn[k] = decay * Wn[k] - gamma * (tauXi * xiW[k]);
  return { loss, events };
}

export const LARGE_LR_METRICS = [
  ...pqMetricSpecs(),
  ...ANNEAL_METRICS,
  ...PHASE_METRICS,
  ...RACE_METRICS,
];

/**
 * Squared norm of both blocks plus the loss: non-finite iff the replica diverged. On the Q
 * plane only V's columns 0, 1 move, so only they are summed (the rest stay as initialised).
 */
function finiteProbe(net: PQNet, loss: number, plane: boolean): Float64Array {
  let s = 0;
  if (plane) {
    for (let j = 0; j < net.halfQ; j++) s += net.V[j * net.d] ** 2 + net.V[j * net.d + 1] ** 2;
    return Float64Array.of(loss, s);
  }
  for (const v of net.W) s += v * v;
  for (const v of net.V) s += v * v;
  return Float64Array.of(loss, s);
}

/** The weight-decay floor warning of this run (pq_floor.ts), fed at snapshots by every backend. */
export function largeLrFloorWatch(prep: LargeLrPrepared, spec: RunSpec): FloorWatch {
  return new FloorWatch({
    ...prep,
    every: spec.every,
    annealing: prep.algo === "large-then-small",
    annealByLoss: prep.anneal === "loss",
  });
}

/** The race metrics of this run (pq_race.ts), fed at snapshots by every backend. */
export function largeLrRaceWatch(prep: LargeLrPrepared, spec: RunSpec): RaceWatch {
  return new RaceWatch({
    ...prep,
    annealing: prep.algo === "large-then-small",
    level: spec.params.race_loss as number,
  });
}

function referenceSession(
  prep: LargeLrPrepared,
  spec: RunSpec,
  state?: SessionState,
): KernelSession {
  const states = Array.from({ length: prep.replicas }, (_, k) => initLargeLrReplica(prep, k));
  const watch = largeLrFloorWatch(prep, spec);
  const race = largeLrRaceWatch(prep, spec);
  let now = 0; // the step of the next snapshot: afterStep runs before it
  let pending: RunEvent[] = [];
  return steppedReferenceSession({
    spec,
    // Checkpoints: server/experiments/pq_state.ts.
    state,
    save: () => savePQReplicas(states, prep.shape, { race, floor: watch }),
    load: (st) => loadPQReplicas(st, states, prep.shape, { race, floor: watch }),
    metricNames: LARGE_LR_METRICS.map((m) => m.name),
    stepReplica: (k, t) => {
      const { loss, events } = largeLrStep(prep, states[k], k, t);
      pending.push(...events);
      return finiteProbe(states[k].net, loss, isPlane(prep.shape));
    },
    metricsOf: (k) => {
      const values = pqReplicaMetrics(prep, states[k], k);
      race.observe(values, k, now, states[k].annealedAt, states[k].stoppedAt);
      return values;
    },
    afterStep: (step) => {
      now = step;
      if (isSnapshotStep(step, spec.every, spec.steps)) {
        states.forEach((s, k) => {
          const loss = trainLoss(s.net, prep.data, prep.shape, dataSetOf(prep.data, k));
          const note = watch.observe(step, k, loss, s.annealedAt, s.stoppedAt >= 0);
          if (note) pending.push(note);
        });
      }
      const events = pending;
      pending = [];
      return events;
    },
  });
}

export function largeLrPlannedEvents(spec: RunSpec): RunEvent[] {
  const p = spec.params;
  const events: RunEvent[] = [];
  const annealStep = p.anneal_step as number;
  if (
    p.algo === "large-then-small" && p.anneal === "step" && annealStep < spec.steps
  ) events.push(plannedAnnealEvent(annealStep));
  const off = p.noise_off_step as number;
  if (p.algo === "small-preact-noise" && off < spec.steps) {
    events.push({ type: "noise_off", step: off, detail: "pre-activation noise off" });
  }
  return events;
}

export const largeLr: ExperimentDefinition<LargeLrPrepared> = {
  id: "large-lr",
  title: "Initial large learning rate: learning order on the P/Q mixture",
  paper:
    "Li, Wei, Ma. Towards Explaining the Regularization Effect of Initial Large Learning Rate in Training Neural Networks. NeurIPS 2019",
  notes: "seed-001-initial-large-lr.md",
  params: largeLrParams,
  metrics: LARGE_LR_METRICS,
  defaults: { steps: 3000, every: 100, replicas: 5 },
  prepare: prepareLargeLr,
  reference: referenceSession,
  // W, V, their gradients, their noise, the copy kept at the anneal and W̃: nine copies of a block.
  estimateBytes: (
    spec,
  ) => (checkNoisePairs(spec), pqEstimateBytes(spec, 9, LARGE_LR_METRICS.length)),
  plannedEvents: largeLrPlannedEvents,
};
