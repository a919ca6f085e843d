/**
 * On the Synergy Between Label Noise and Learning Rate Annealing in Neural Network Training
 * (Wei, Ren, Du), Section 3.1: single-example SGD whose label is flipped with probability δ,
 * fresh at every step, on the P/Q mixture of Li, Wei & Ma (server/experiments/pq_model.ts).
 * With a large learning rate the accumulated label noise keeps the activation patterns on
 * the Q rays random, so P is learned from every example that carries it before Q is
 * memorised (LNSGD-LS); with the small rate only (LNSGD-S), or without label noise
 * (FBGD-LS), Q is memorised first and P is learned from the P-only examples alone.
 * Notes: ../shared/papers/seed-000-synergy-label-noise-annealing.md. No weight decay.
 *
 * Updates (α_t = η1 until the anneal, then η2; LNSGD-S uses η2 throughout):
 *   lnsgd-ls, lnsgd-s: U_{t+1} = U_t − α_t ∇_U ℓ(σ_t y_i f(x_i)),  i ~ U[N], σ_t = −1 w.p. δ
 *   fbgd-ls:           U_{t+1} = U_t − α_t ∇_U L̂(U_t)  (full batch, clean labels)
 * The anneal (pq_anneal.ts) fires on the clean training loss q·log 2 + ε1, checked every
 * anneal_check_every steps for SGD (a full pass over the data) and every step for GD.
 *
 * Random draws at update t of replica k (key (seed, k), counter step t):
 *   philoxBlock(seed, k, t, STREAM_SGD, 0) = w0..w3: i = uniformIndex(w0, N);
 *   the label is flipped iff uniform24(w1) < δ. FBGD-LS draws nothing.
 */
import { philoxBlock, uniform24, uniformIndex } from "../rng/philox.ts";
import { steppedReferenceSession } from "../engine/reference.ts";
import { loadPQReplicas, savePQReplicas } from "./pq_state.ts";
import { type ParamSchema, perReplica } from "./schema.ts";
import type {
  ExperimentDefinition,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
} from "./types.ts";
import {
  accumulateGradient,
  activationPattern,
  annealThreshold,
  dataSetOf,
  forwardExample,
  fullBatchGradient,
  generateRunData,
  initPQNet,
  isPlane,
  logistic,
  logisticDeriv,
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
  STREAM_SGD,
  trackNoisePart,
  trainExample,
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
import { RACE_METRICS, raceParams, RaceWatch } from "./pq_race.ts";

export const LABEL_NOISE_ALGOS = ["lnsgd-ls", "lnsgd-s", "fbgd-ls"] as const;
export type LabelNoiseAlgo = typeof LABEL_NOISE_ALGOS[number];
export const LABEL_NOISE_ALGO_CODE: Record<LabelNoiseAlgo, number> = {
  "lnsgd-ls": 0,
  "lnsgd-s": 1,
  "fbgd-ls": 2,
};

const SWEEP = "lab sweep, docs/experiments/label-noise-anneal.md";

export const labelNoiseParams: ParamSchema = {
  algo: {
    kind: "enum",
    values: [...LABEL_NOISE_ALGOS],
    default: "lnsgd-ls",
    doc: "training algorithm",
    valueDocs: {
      "lnsgd-ls": "batch-1 label-flip SGD, η1 then η2 at the anneal",
      "lnsgd-s": "batch-1 label-flip SGD, η2 throughout",
      "fbgd-ls": "full-batch GD on clean labels, η1 then η2 at the anneal",
    },
    source: "Section 3.1",
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
    eta1: 2,
    eta2: 0.2,
    epsilon1: 0.05,
    annealStep: 10000,
    annealRule: "loss",
    annealAlgos: ["lnsgd-ls", "fbgd-ls"],
    source: SWEEP,
  }),
  delta: {
    kind: "number",
    default: 1 / 64,
    min: 0,
    max: 0.5,
    perReplica: true,
    doc: "label-flip probability δ (fresh at every step, also after the anneal)",
    source:
      "Assumption (δ = 1/poly(d)); 1/64 chosen as 1/d at the default d = 64 (App. B uses 0.1 on CIFAR-100: preset label-noise-anneal-delta-0.1)",
    appliesTo: ["lnsgd-ls", "lnsgd-s"],
  },
  anneal_check_every: {
    kind: "int",
    default: 100,
    min: 1,
    max: 1e9,
    doc:
      "SGD steps between checks of the loss-threshold anneal (each check is a pass over the data)",
    source: "notes §7 (the full training loss every k steps)",
    appliesTo: ["lnsgd-ls", "lnsgd-s"],
  },
  ...stopParams({ stopAlgos: [...LABEL_NOISE_ALGOS] }),
  ...raceParams,
};

export interface LabelNoisePrepared {
  algo: LabelNoiseAlgo;
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
  delta: Float64Array;
  anneal: AnnealRule;
  annealStep: number;
  epsilon1: number;
  checkEvery: number;
  threshold: Float64Array;
  /** Stop loss per replica: ε2 or ε′2 (−1: stop=off). */
  stopAt: Float64Array;
}

export function prepareLabelNoise(spec: RunSpec): LabelNoisePrepared {
  const p = spec.params;
  const R = spec.replicas;
  const shape = pqShape(p);
  const perReplicaData = p.data === "per-replica";
  const seed = p.seed as number;
  const firstReplica = spec.firstReplica ?? 0;
  const data = perReplicaData
    ? generateRunData(shape, seed, R, (s) => firstReplica + s)
    : generateRunData(shape, seed, 1);
  const threshold = new Float64Array(R), stopAt = new Float64Array(R);
  const algo = p.algo as LabelNoiseAlgo;
  for (let k = 0; k < R; k++) {
    const set = perReplicaData ? k : 0;
    threshold[k] = annealThreshold(data, shape, set, p.epsilon1 as number);
    stopAt[k] = stopThreshold(
      p.stop as StopRule,
      qFraction(data, shape, set),
      p.epsilon1 as number,
      algo !== "lnsgd-s",
      p.stop_scale as number,
    );
  }
  return {
    algo,
    algoCode: LABEL_NOISE_ALGO_CODE[algo],
    shape,
    replicas: R,
    data,
    seed,
    firstReplica,
    tau0: perReplica(p.tau0, R),
    eta1: perReplica(p.eta1, R),
    eta2: perReplica(p.eta2, R),
    delta: perReplica(p.delta, R),
    anneal: p.anneal as AnnealRule,
    annealStep: p.anneal_step as number,
    epsilon1: p.epsilon1 as number,
    // Full-batch GD has the loss of every step for free.
    checkEvery: algo === "fbgd-ls" ? 1 : p.anneal_check_every as number,
    threshold,
    stopAt,
  };
}

/** A replica's state between steps (its anneal and stop in PhaseState). */
export interface LabelNoiseReplica extends PhaseState {
  net: PQNet;
  gW: Float64Array;
  gV: Float64Array;
  hW: Float64Array;
  hV: Float64Array;
  pattern: Uint8Array | null;
  lr: number;
}

export function initLabelNoiseReplica(prep: LabelNoisePrepared, replica: number) {
  const net = initPQNet(prep.shape, prep.seed, prep.firstReplica + replica, prep.tau0[replica]);
  trackNoisePart(net);
  const state: LabelNoiseReplica = {
    net,
    gW: new Float64Array(net.W.length),
    gV: new Float64Array(net.V.length),
    hW: new Float64Array(net.halfP),
    hV: new Float64Array(net.halfQ),
    ...initialPhase(),
    pattern: null,
    lr: prep.algo === "lnsgd-s" ? prep.eta2[replica] : prep.eta1[replica],
  };
  return state;
}

/** The draws of one SGD step: example index and label sign σ (−1 = flipped). */
export function sgdDraws(prep: LabelNoisePrepared, replica: number, t: number) {
  const w = philoxBlock(prep.seed, prep.firstReplica + replica, t, STREAM_SGD, 0);
  return {
    i: uniformIndex(w[0], prep.shape.n),
    sigma: uniform24(w[1]) < prep.delta[replica] ? -1 : 1,
  };
}

/**
 * Update t of one replica, in place. Returns the events of this step (anneal, stop) and a
 * number that is non-finite iff the update produced a non-finite output. A stopped replica
 * does not move.
 */
export function labelNoiseStep(
  prep: LabelNoisePrepared,
  state: LabelNoiseReplica,
  replica: number,
  t: number,
): { probe: number; events: RunEvent[] } {
  const { shape, data } = prep;
  const { net } = state;
  const set = dataSetOf(data, replica);
  const events: RunEvent[] = [];
  if (state.stoppedAt >= 0) return { probe: 0, events };
  const fullBatch = prep.algo === "fbgd-ls";
  let batchLoss = NaN;
  if (fullBatch) batchLoss = fullBatchGradient(net, data, shape, set, null, state.gW, state.gV);
  // The clean training loss of U_t, computed at most once per step (a pass over the data).
  let checked = NaN;
  const loss = () =>
    Number.isNaN(checked)
      ? (checked = fullBatch ? batchLoss : trainLoss(net, data, shape, set))
      : checked;
  const annealing = prep.algo !== "lnsgd-s";
  if (annealing && state.annealedAt < 0) {
    if (
      shouldAnneal(prep.anneal, t, prep.annealStep, prep.checkEvery, loss, prep.threshold[replica])
    ) {
      state.annealedAt = t;
      state.pattern = activationPattern(net, data, shape, set);
      state.atAnneal = pqMetrics(net, data, shape, set, null);
      if (prep.anneal === "loss") {
        events.push(annealEvent(replica, t, checked, prep.threshold[replica], prep.firstReplica));
      }
      events.push(annealValuesEvent(replica, t, state.atAnneal, prep.firstReplica));
    }
  } else if (!annealing && t === prep.annealStep) {
    state.pattern = activationPattern(net, data, shape, set);
  }
  const eligible = !annealing || state.annealedAt >= 0;
  if (shouldStop(prep.stopAt[replica], eligible, t, prep.checkEvery, loss)) {
    state.stoppedAt = t;
    state.atStop = pqMetrics(net, data, shape, set, state.pattern);
    events.push(
      stopEvent(replica, t, loss(), prep.stopAt[replica], state.atStop, prep.firstReplica),
    );
    return { probe: 0, events };
  }
  const lr = prep.algo === "lnsgd-s" || state.annealedAt >= 0
    ? prep.eta2[replica]
    : prep.eta1[replica];
  state.lr = lr;
  if (fullBatch) {
    if (isPlane(shape)) {
      // Only V's plane columns have a gradient; W and the rest never move (pq_model.ts).
      for (let j = 0; j < net.halfQ; j++) {
        net.V[j * net.d] -= lr * state.gV[j * net.d];
        net.V[j * net.d + 1] -= lr * state.gV[j * net.d + 1];
      }
      return { probe: batchLoss, events };
    }
    for (let k = 0; k < net.W.length; k++) net.W[k] -= lr * state.gW[k];
    for (let k = 0; k < net.V.length; k++) net.V[k] -= lr * state.gV[k];
    return { probe: batchLoss, events };
  }
  // One example, label multiplied by σ: ∇ℓ(σ y f) = ℓ'(σ y f)·σ y·∇f.
  const { i, sigma } = sgdDraws(prep, replica, t);
  const ex = trainExample(data, shape, set, i);
  const y = sigma * data.y[ex.index];
  const f = forwardExample(net, ex, state.hW, state.hV, null);
  const c = -lr * logisticDeriv(y * f) * y;
  // accumulateGradient adds c·∇f straight into the weights: U ← U − lr·ℓ'·σy·∇f.
  accumulateGradient(net, ex, state.hW, state.hV, c, net.W, net.V);
  // The noise part (App. D.1): W̃ ← W̃ − α ε y ∇_W f with the clean label y and ε = −δ
  // (kept label) or 1 − δ (flipped), Γ ≡ −1 for the logistic loss. V's share lands in the
  // scratch gV, which SGD does not use.
  const eps = sigma > 0 ? -prep.delta[replica] : 1 - prep.delta[replica];
  const cNoise = -lr * eps * data.y[ex.index];
  accumulateGradient(net, ex, state.hW, state.hV, cNoise, net.Wn!, state.gV);
  return { probe: logistic(y * f) + c, events };
}

export const LABEL_NOISE_METRICS = [
  ...pqMetricSpecs(),
  ...ANNEAL_METRICS,
  ...PHASE_METRICS,
  ...RACE_METRICS,
];

/** The race metrics of this run (pq_race.ts), fed at snapshots by every backend. */
export function labelNoiseRaceWatch(prep: LabelNoisePrepared, spec: RunSpec): RaceWatch {
  return new RaceWatch({
    ...prep,
    annealing: prep.algo !== "lnsgd-s",
    level: spec.params.race_loss as number,
  });
}

function referenceSession(
  prep: LabelNoisePrepared,
  spec: RunSpec,
  state?: SessionState,
): KernelSession {
  const states = Array.from({ length: prep.replicas }, (_, k) => initLabelNoiseReplica(prep, k));
  const race = labelNoiseRaceWatch(prep, spec);
  let now = 0; // the step of the next snapshot: afterStep runs before it
  let pending: RunEvent[] = [];
  return steppedReferenceSession({
    spec,
    // Checkpoints: server/experiments/pq_state.ts.
    state,
    save: () => savePQReplicas(states, prep.shape, { race }),
    load: (st) => loadPQReplicas(st, states, prep.shape, { race }),
    metricNames: LABEL_NOISE_METRICS.map((m) => m.name),
    stepReplica: (k, t) => {
      const { probe, events } = labelNoiseStep(prep, states[k], k, t);
      pending.push(...events);
      return [probe];
    },
    metricsOf: (k) => {
      const values = pqReplicaMetrics(prep, states[k], k);
      race.observe(values, k, now, states[k].annealedAt, states[k].stoppedAt);
      return values;
    },
    afterStep: (step) => {
      now = step;
      const events = pending;
      pending = [];
      return events;
    },
  });
}

export const labelNoiseAnneal: ExperimentDefinition<LabelNoisePrepared> = {
  id: "label-noise-anneal",
  title: "Label noise and learning-rate annealing: learning order on the P/Q mixture",
  paper:
    "Wei, Ren, Du. On the Synergy Between Label Noise and Learning Rate Annealing in Neural Network Training",
  notes: "seed-000-synergy-label-noise-annealing.md",
  params: labelNoiseParams,
  metrics: LABEL_NOISE_METRICS,
  defaults: { steps: 20000, every: 500, replicas: 5 },
  prepare: prepareLabelNoise,
  reference: referenceSession,
  // W, V, their gradients, the copy kept at the anneal and W̃: seven copies of a block per replica.
  estimateBytes: (spec) => pqEstimateBytes(spec, 7, LABEL_NOISE_METRICS.length),
  plannedEvents(spec) {
    const p = spec.params;
    const at = p.anneal_step as number;
    return p.algo !== "lnsgd-s" && p.anneal === "step" && at < spec.steps
      ? [plannedAnnealEvent(at)]
      : [];
  },
};
