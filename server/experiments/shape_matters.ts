/**
 * Shape Matters (HaoChen, Wei, Lee, Ma; COLT 2021, arXiv 2006.08680), Fig. 1 (right) and
 * App. A.1: quadratically parameterised sparse regression f_v(x) = <v⊙v, x>, d = 100, n = 40,
 * r = 5, v0 = τ·1. Label noise and mini-batch noise recover the sparse truth; GD from a large
 * initialisation converges to a dense interpolant; spherical Gaussian noise does not help.
 * Notes: ../shared/papers/seed-003-shape-matters.md (constants checked against the released
 * code, jhaochenz96/noise-implicit-bias, quadratic/train_quadratic.py).
 *
 * Random draws (identical on every backend; key = (seed, replica), see server/rng/philox.ts):
 *   step t, stream 0 (STREAM_INDEX), block 0, words w0..w3:
 *     i = uniformIndex(w0, n)                        label-noise example, mini-batch i
 *     j = uniformIndex(w1, n)                        mini-batch j (independent; i = j allowed)
 *     s = boxMuller(w2, w3)[0]   if noise=gaussian   label-noise sign/size
 *     s = rademacher(w2)         if noise=rademacher
 *   step t, stream 1 (STREAM_NORMAL): d normals z_0..z_{d-1} (gaussian, langevin), see normals().
 * Data: row i of X is normals(dataSeed, DATA_REPLICA, i, 0, d), rounded to float32;
 *   v* = (1,…,1 [r times], 0,…,0); y_i = float32(<v*⊙v*, x_i>). Every backend reads these
 *   same float32 values, so the data are bit-identical across backends.
 */
import { type ParamSchema, perReplica, scheduleFactor, type ScheduleValue } from "./schema.ts";
import type {
  ExperimentDefinition,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
} from "./types.ts";
import {
  boxMuller,
  DATA_REPLICA,
  normals,
  philoxBlock,
  rademacher,
  uniformIndex,
} from "../rng/philox.ts";
import { steppedReferenceSession } from "../engine/reference.ts";
import { stateArray } from "../engine/session_state.ts";

export const STREAM_INDEX = 0;
export const STREAM_NORMAL = 1;
export const SUPPORT_THRESHOLD = 0.01;

export const ALGOS = ["gd", "label-noise", "minibatch-noise", "gaussian", "langevin"] as const;
export type ShapeMattersAlgo = typeof ALGOS[number];
/** Numeric codes the kernels switch on. */
export const ALGO_CODE: Record<ShapeMattersAlgo, number> = {
  "gd": 0,
  "label-noise": 1,
  "minibatch-noise": 2,
  "gaussian": 3,
  "langevin": 4,
};

const RELEASED_CODE_SCHEDULE: ScheduleValue = [[100000, 0.1], [200000, 0.1]];

export const shapeMattersParams: ParamSchema = {
  algo: {
    kind: "enum",
    values: [...ALGOS],
    default: "label-noise",
    doc: "training algorithm (all take a full-batch gradient step and add one kind of noise)",
    valueDocs: {
      "gd": "full-batch gradient descent: v ← v − lr·∇L(v)",
      "label-noise": "v ← v − lr[∇L(v) − δ·s·(v⊙x_i)], i uniform (eq. 1 / App. A.1)",
      "minibatch-noise": "v ← v − lr[∇L + δ(∇ℓ_i − ∇ℓ_j)], i, j independent uniform",
      "gaussian": "spherical Gaussian gradient noise: v ← v − lr(∇L + σ·z), z ~ N(0, I)",
      "langevin": "Langevin dynamics (eq. 2): v ← v − lr·∇L + sqrt(2·lr/λ)·z",
    },
    source: "paper Fig. 1 (right), App. A.1",
  },
  d: {
    kind: "int",
    default: 100,
    min: 1,
    max: 4096,
    doc: "dimension",
    source: "App. A.1 (--d=100)",
  },
  n: {
    kind: "int",
    default: 40,
    min: 1,
    max: 4096,
    doc: "training examples",
    source: "App. A.1 (--m=40)",
  },
  r: {
    kind: "int",
    default: 5,
    min: 0,
    max: 4096,
    doc: "sparsity of v* (v*_k = 1 for k < r, else 0)",
    source: "App. A.1 (--rho=5)",
  },
  tau: {
    kind: "number",
    default: 1,
    min: 1e-6,
    max: 1e3,
    doc: "initialisation scale: v0 = tau·1 (large init is essential for the contrast)",
    source: "App. A.1 (--alpha=1.0)",
  },
  lr: {
    kind: "number",
    default: 0.01,
    min: 1e-9,
    max: 10,
    perReplica: true,
    log: true,
    doc: "learning rate η (before the schedule's factors)",
    source: "App. A.1",
  },
  lr_schedule: {
    kind: "schedule",
    default: [],
    defaultBy: { param: "algo", values: { "label-noise": RELEASED_CODE_SCHEDULE } },
    doc:
      "piecewise-constant LR factors [[step, factor], …]; label-noise defaults to ÷10 at 1e5 and 2e5",
    source: "released code (train_quadratic.py): label noise anneals ÷10 at 1e5 and 2e5",
  },
  delta: {
    kind: "number",
    default: 1,
    min: 0,
    max: 1e3,
    perReplica: true,
    log: true,
    doc: "noise level δ of label noise and mini-batch noise",
    source: "App. A.1 (δ = 1.0)",
    appliesTo: ["label-noise", "minibatch-noise"],
  },
  noise: {
    kind: "enum",
    values: ["gaussian", "rademacher"],
    default: "gaussian",
    doc: "label-noise distribution: s ~ N(0,1) (released code) or s = ±1 (paper)",
    valueDocs: {
      gaussian: "s ~ N(0, 1), as the released code",
      rademacher: "s ~ Unif{±1}, as the paper's text",
    },
    source: "notes §4d: the paper says ±δ, the code draws N(0, δ²)",
    appliesTo: ["label-noise"],
  },
  sigma: {
    kind: "number",
    default: 0.01,
    min: 0,
    max: 1e3,
    perReplica: true,
    log: true,
    doc: "std σ of the spherical Gaussian gradient noise",
    source: "released code README example (--opt=SGLD --delta=0.01); Fig. 1 legend lost in OCR",
    appliesTo: ["gaussian"],
  },
  lambda: {
    kind: "number",
    default: 100,
    min: 1e-9,
    max: 1e12,
    perReplica: true,
    log: true,
    doc: "Langevin inverse temperature λ (noise sqrt(2·lr/λ) per step)",
    source: "notes §6 item 5 example regime (λ = 100)",
    appliesTo: ["langevin"],
  },
  seed: {
    kind: "int",
    default: 123,
    min: 0,
    max: 0xFFFFFFFE,
    doc: "data seed (also keys each replica's noise with the replica index)",
    source: "released code uses seed 123",
  },
  data: {
    kind: "enum",
    values: ["shared", "per-replica"],
    default: "shared",
    doc: "all replicas train on the seed's data, or replica k on data seed seed+k",
    valueDocs: {
      shared: "one data set for every replica (replicas differ by noise and hyper-parameters)",
      "per-replica": "replica k uses data seed seed+k (seeds as replicas)",
    },
  },
};

export interface ShapeMattersPrepared {
  algo: ShapeMattersAlgo;
  algoCode: number;
  d: number;
  n: number;
  r: number;
  replicas: number;
  /** 0 if all replicas share the data, 1 if each has its own (X and y strides apply). */
  dataPerReplica: boolean;
  /** Row-major [dataSets × n × d], float32-exact values. */
  X: Float32Array;
  /** [dataSets × n]. */
  y: Float32Array;
  /** [d]: v*⊙v*. */
  vStarSq: Float32Array;
  v0: number;
  lr: Float64Array;
  delta: Float64Array;
  sigma: Float64Array;
  lambda: Float64Array;
  rademacherNoise: boolean;
  schedule: ScheduleValue;
  seed: number;
  /** Global index of replica 0 (RunSpec.firstReplica): keys and data seeds use firstReplica + k. */
  firstReplica: number;
}

/** Row i of the data matrix for one data seed: d float32-rounded standard normals. */
export function generateData(dataSeed: number, n: number, d: number, r: number) {
  const X = new Float32Array(n * d);
  const y = new Float32Array(n);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    normals(dataSeed >>> 0, DATA_REPLICA, i, 0, d, row);
    let label = 0;
    for (let k = 0; k < d; k++) {
      X[i * d + k] = row[k];
      if (k < r) label += X[i * d + k];
    }
    y[i] = label;
  }
  return { X, y };
}

export function prepareShapeMatters(spec: RunSpec): ShapeMattersPrepared {
  const p = spec.params;
  const d = p.d as number, n = p.n as number, r = Math.min(p.r as number, d);
  const R = spec.replicas;
  const seed = p.seed as number;
  const dataPerReplica = p.data === "per-replica";
  const firstReplica = spec.firstReplica ?? 0;
  const sets = dataPerReplica ? R : 1;
  const seedOfSet = dataPerReplica ? seed + firstReplica : seed;
  const X = new Float32Array(sets * n * d);
  const y = new Float32Array(sets * n);
  for (let s = 0; s < sets; s++) {
    const data = generateData((seedOfSet + s) >>> 0, n, d, r);
    X.set(data.X, s * n * d);
    y.set(data.y, s * n);
  }
  const vStarSq = new Float32Array(d);
  for (let k = 0; k < r; k++) vStarSq[k] = 1;
  const algo = p.algo as ShapeMattersAlgo;
  return {
    algo,
    algoCode: ALGO_CODE[algo],
    d,
    n,
    r,
    replicas: R,
    dataPerReplica,
    X,
    y,
    vStarSq,
    v0: p.tau as number,
    lr: perReplica(p.lr, R),
    delta: perReplica(p.delta, R),
    sigma: perReplica(p.sigma, R),
    lambda: perReplica(p.lambda, R),
    rademacherNoise: p.noise === "rademacher",
    schedule: p.lr_schedule as ScheduleValue,
    seed,
    firstReplica,
  };
}

// ---------------------------------------------------------------------------------------
// The float64 reference: each function is one line of the paper.

/** r_i = <v⊙v, x_i> − y_i for every example. */
export function residuals(
  v: Float64Array,
  X: Float32Array,
  y: Float32Array,
  n: number,
  d: number,
  xOff = 0,
  yOff = 0,
): Float64Array {
  const res = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let f = 0;
    for (let k = 0; k < d; k++) f += v[k] * v[k] * X[xOff + i * d + k];
    res[i] = f - y[yOff + i];
  }
  return res;
}

/** L(v) = (1/n) Σ_i ¼ (<v⊙v, x_i> − y_i)². */
export function trainLoss(res: Float64Array): number {
  let s = 0;
  for (const ri of res) s += 0.25 * ri * ri;
  return s / res.length;
}

/** ∇L(v) = (1/n) Σ_i r_i · x_i ⊙ v. */
export function fullGradient(
  v: Float64Array,
  res: Float64Array,
  X: Float32Array,
  d: number,
  xOff = 0,
): Float64Array {
  const n = res.length;
  const g = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) g[k] += res[i] * X[xOff + i * d + k];
  for (let k = 0; k < d; k++) g[k] = g[k] * v[k] / n;
  return g;
}

/** ∇ℓ_i(v) = r_i · x_i ⊙ v, the gradient of ¼(<v⊙v, x_i> − y_i)². */
export function exampleGradient(
  v: Float64Array,
  res: Float64Array,
  X: Float32Array,
  d: number,
  i: number,
  xOff = 0,
): Float64Array {
  const g = new Float64Array(d);
  for (let k = 0; k < d; k++) g[k] = res[i] * X[xOff + i * d + k] * v[k];
  return g;
}

/** test_error = ‖v⊙v − v*⊙v*‖². */
export function testError(v: Float64Array, vStarSq: Float32Array): number {
  let s = 0;
  for (let k = 0; k < v.length; k++) {
    const e = v[k] * v[k] - vStarSq[k];
    s += e * e;
  }
  return s;
}

export function vNorm(v: Float64Array): number {
  let s = 0;
  for (const vk of v) s += vk * vk;
  return Math.sqrt(s);
}

export function supportSize(v: Float64Array): number {
  let c = 0;
  for (const vk of v) if (vk * vk > SUPPORT_THRESHOLD) c++;
  return c;
}

/** The noise draws of one replica at one step, decoded from Philox as the header says. */
export function shapeMattersDraws(prep: ShapeMattersPrepared, replica: number, step: number) {
  const w = philoxBlock(prep.seed, prep.firstReplica + replica, step, STREAM_INDEX, 0);
  const i = uniformIndex(w[0], prep.n);
  const j = uniformIndex(w[1], prep.n);
  const s = prep.rademacherNoise ? rademacher(w[2]) : boxMuller(w[2], w[3])[0];
  return { i, j, s };
}

/**
 * One step of the chosen algorithm for one replica, in place, exactly as App. A.1 writes it.
 * Returns nothing; the caller checks finiteness.
 */
export function shapeMattersStep(
  prep: ShapeMattersPrepared,
  v: Float64Array,
  replica: number,
  step: number,
): void {
  const { d, n } = prep;
  const set = prep.dataPerReplica ? replica : 0;
  const xOff = set * n * d, yOff = set * n;
  const lr = prep.lr[replica] * scheduleFactor(prep.schedule, step);
  const res = residuals(v, prep.X, prep.y, n, d, xOff, yOff);
  const grad = fullGradient(v, res, prep.X, d, xOff);
  const update = new Float64Array(d); // the bracket multiplied by lr
  switch (prep.algo) {
    case "gd":
      update.set(grad);
      break;
    case "label-noise": {
      // ∇ℓ̃_i − ∇ℓ_i = −δ·s·(v⊙x_i): the gradient of ¼(f − y − δs)² minus the clean one.
      const { i, s } = shapeMattersDraws(prep, replica, step);
      const delta = prep.delta[replica];
      for (let k = 0; k < d; k++) update[k] = grad[k] - delta * s * v[k] * prep.X[xOff + i * d + k];
      break;
    }
    case "minibatch-noise": {
      const { i, j } = shapeMattersDraws(prep, replica, step);
      const gi = exampleGradient(v, res, prep.X, d, i, xOff);
      const gj = exampleGradient(v, res, prep.X, d, j, xOff);
      const delta = prep.delta[replica];
      for (let k = 0; k < d; k++) update[k] = grad[k] + delta * (gi[k] - gj[k]);
      break;
    }
    case "gaussian": {
      const z = normals(prep.seed, prep.firstReplica + replica, step, STREAM_NORMAL, d);
      const sigma = prep.sigma[replica];
      for (let k = 0; k < d; k++) update[k] = grad[k] + sigma * z[k];
      break;
    }
    case "langevin": {
      // v ← v − lr∇L + sqrt(2 lr/λ) z, written as v − lr[∇L − sqrt(2/(lr λ)) z].
      const z = normals(prep.seed, prep.firstReplica + replica, step, STREAM_NORMAL, d);
      const scale = Math.sqrt(2 / (lr * prep.lambda[replica]));
      for (let k = 0; k < d; k++) update[k] = grad[k] - scale * z[k];
      break;
    }
  }
  for (let k = 0; k < d; k++) v[k] -= lr * update[k];
}

export const SHAPE_MATTERS_METRICS = [
  {
    name: "train_loss",
    doc: "L(v) = (1/n) Σ ¼(<v⊙v, x_i> − y_i)² (App. A.1 train error)",
    scale: "log" as const,
  },
  { name: "test_error", doc: "‖v⊙v − v*⊙v*‖² (App. A.1 test error, no ¼)", scale: "log" as const },
  { name: "v_norm", doc: "‖v‖₂", scale: "linear" as const },
  { name: "support_size", doc: "#{k : v_k² > 0.01}", scale: "linear" as const, smooth: false },
];

/** Metrics of one replica's state, float64. */
export function shapeMattersMetrics(prep: ShapeMattersPrepared, v: Float64Array, replica: number) {
  const set = prep.dataPerReplica ? replica : 0;
  const res = residuals(v, prep.X, prep.y, prep.n, prep.d, set * prep.n * prep.d, set * prep.n);
  return {
    train_loss: trainLoss(res),
    test_error: testError(v, prep.vStarSq),
    v_norm: vNorm(v),
    support_size: supportSize(v),
  };
}

function referenceSession(
  prep: ShapeMattersPrepared,
  spec: RunSpec,
  state?: SessionState,
): KernelSession {
  const states = Array.from(
    { length: prep.replicas },
    () => new Float64Array(prep.d).fill(prep.v0),
  );
  const R = prep.replicas, d = prep.d;
  return steppedReferenceSession({
    spec,
    state,
    // Checkpoint: v, [R × d].
    save: () => {
      const v = new Float64Array(R * d);
      states.forEach((s, r) => v.set(s, r * d));
      return { arrays: { v } };
    },
    load: (st) => {
      const v = stateArray(st, "v", R * d);
      states.forEach((s, r) => s.set(v.subarray(r * d, r * d + d)));
    },
    metricNames: SHAPE_MATTERS_METRICS.map((m) => m.name),
    stepReplica: (r, t) => {
      shapeMattersStep(prep, states[r], r, t);
      return states[r];
    },
    metricsOf: (r) => shapeMattersMetrics(prep, states[r], r),
    frame: () => {
      const values = new Float32Array(prep.replicas * prep.d);
      states.forEach((v, r) => v.forEach((vk, k) => values[r * prep.d + k] = vk * vk));
      return { name: "v_sq", values, width: prep.d };
    },
  });
}

/** Frames per run at most (about), see frameEvery. */
const MAX_FRAMES = 200;

export function plannedScheduleEvents(schedule: ScheduleValue, steps: number): RunEvent[] {
  const events: RunEvent[] = [];
  let scale = 1;
  for (const [at, factor] of schedule) {
    scale *= factor;
    if (at > 0 && at < steps) events.push({ type: "lr_change", step: at, factor, lr_scale: scale });
  }
  return events;
}

export const shapeMatters: ExperimentDefinition<ShapeMattersPrepared> = {
  id: "shape-matters",
  title: "Shape Matters: sparse regression with a quadratic parameterisation",
  paper:
    "HaoChen, Wei, Lee, Ma. Shape Matters: Understanding the Implicit Bias of the Noise Covariance. COLT 2021",
  notes: "seed-003-shape-matters.md",
  params: shapeMattersParams,
  metrics: SHAPE_MATTERS_METRICS,
  frames: [{
    name: "v_sq",
    doc:
      "v⊙v per coordinate (row per replica), against v*⊙v*; every snapshot, at most ~200 per run (then every k-th snapshot), and at the last step",
    everySnapshots: 1,
  }],
  // A frame per snapshot, but at most about MAX_FRAMES per run: a long run with a small
  // `every` would otherwise log R·d floats every few steps.
  frameEvery: (spec) => Math.max(1, Math.ceil(spec.steps / spec.every / MAX_FRAMES)),
  defaults: { steps: 300000, every: 1000, replicas: 4 },
  prepare: prepareShapeMatters,
  reference: referenceSession,
  estimateBytes(spec) {
    const p = spec.params;
    const d = p.d as number, n = p.n as number, R = spec.replicas;
    const sets = p.data === "per-replica" ? R : 1;
    const snapshots = Math.ceil(spec.steps / spec.every) + 1;
    return 4 *
      (sets * n * (d + 1) + 3 * R * d + R * 8 +
        SHAPE_MATTERS_METRICS.length * R * Math.min(snapshots, 4096));
  },
  plannedEvents(spec) {
    return plannedScheduleEvents(spec.params.lr_schedule as ScheduleValue, spec.steps);
  },
};
