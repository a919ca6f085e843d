/**
 * Two-layer linear networks under label-noise SGD (Zhang, Zhou, Wang, Han, Huang, Suzuki, Yan,
 * "On the Learning Dynamics of Two-layer Linear Networks with Label Noise SGD", HiLD @ ICML
 * 2025; extended version arXiv 2603.10397, code a-usually/Label-Noise-SGD). f(x) = aᵀWx with
 * NTK initialisation; noise-free regression y = θ*ᵀx, x ~ N(0, I_d). Label noise first shrinks
 * every first-layer neuron (phase I: leaving the lazy ball ‖w_i − w_i(0)‖ ≤ 1/√m), then the
 * neurons align with ±θ* (phase II); plain SGD stays lazy.
 * Notes: ../shared/papers/seed-002-two-layer-linear-label-noise.md. The maths of each update
 * and metric is in linear_label_noise_reference.ts; this module holds the schema and the data.
 *
 * Random draws (identical on every backend). Two keys, see server/rng/philox.ts:
 *   data key  = (dataSeed, DATA_REPLICA), dataSeed = seed (data=shared) or seed+k (per-replica)
 *   init key  = (seed, DATA_REPLICA) (init=shared) or (seed, k) (init=per-replica)
 *   noise key = (seed, k)                                       k = replica index
 * Every stream id below is distinct, so no two draws ever share a Philox counter.
 *   θ*:        normals(data key, step 0, STREAM_THETA, d), scaled to theta_norm, float32
 *   X row i:   normals(data key, step i, STREAM_TRAIN, d), float32; y_i = float32(<θ*, x_i>)
 *   test row:  normals(data key, step i, STREAM_TEST, d), float32; y likewise
 *   W(0) row i: normals(init key, step i, STREAM_INIT_W, d)/√d, float32
 *   a(0):      normals(init key, step 0, STREAM_INIT_A, m)/√m, float32
 *   a(0) for `oscillation`: u = uniformIndex(word 0 of (init key, step i, STREAM_INIT_CHAIN,
 *              block 0), 4); u = 0 → +c, u = 1 → −c, else 0, with c = float32(lr^¼)
 *   step t, sample index (finite data): ξ_t = uniformIndex(word 0 of (data key, t,
 *              STREAM_INDEX, 0), n); shared by replicas with the same data, so σ = 0 and
 *              σ > 0 replicas see the same sample sequence (notes §7 "RNG streams")
 *   step t, online sample: x_t = float32(normals(data key, t, STREAM_ONLINE, d)), y_t = <θ*, x_t>
 *   step t, label noise: words w of (noise key, t, STREAM_NOISE, 0):
 *              ε_t = σ·rademacher(w0) (noise=rademacher), σ·boxMuller(w0, w1)[0] (gaussian)
 *   step t, chain (oscillation): neuron i takes bit (i & 31) of word ((i >> 5) & 3) of block
 *              (i >> 7) of (noise key, t, STREAM_CHAIN); bit 0 → +c, 1 → −c (used when a_i = 0)
 */
import { type ParamSchema, perReplica } from "./schema.ts";
import type { RunEvent, RunSpec } from "./types.ts";
import { DATA_REPLICA, normals, philoxBlock, uniformIndex } from "../rng/philox.ts";

export const STREAM_TRAIN = 0;
export const STREAM_TEST = 1;
export const STREAM_THETA = 2;
export const STREAM_INIT_W = 3;
export const STREAM_INIT_A = 4;
export const STREAM_INIT_CHAIN = 5;
export const STREAM_ONLINE = 6;
export const STREAM_INDEX = 7;
export const STREAM_NOISE = 8;
export const STREAM_CHAIN = 9;

export const ALGOS = ["label-noise-sgd", "sgd", "gd", "oscillation", "periodic"] as const;
export type LinearAlgo = typeof ALGOS[number];
/** Numeric codes the kernels switch on. */
export const ALGO_CODE: Record<LinearAlgo, number> = {
  "label-noise-sgd": 0,
  "sgd": 1,
  "gd": 2,
  "oscillation": 3,
  "periodic": 4,
};

/** Per-neuron frame: planar blocks [‖w_i‖ for i < m | <w_i, θ*> | a_i], one row per replica. */
export const NEURON_FRAME = "neurons";
/** Listing every on/off switch of a long periodic run would flood the log; list this many. */
export const MAX_LISTED_TOGGLES = 200;

const SGD_ALGOS = ["label-noise-sgd", "sgd", "periodic"];
const NOISY_ALGOS = ["label-noise-sgd", "periodic"];

export const linearLabelNoiseParams: ParamSchema = {
  algo: {
    kind: "enum",
    values: [...ALGOS],
    default: "label-noise-sgd",
    doc: "training algorithm; W and a are always updated simultaneously from time-t values",
    valueDocs: {
      "label-noise-sgd":
        "batch 1, ỹ = y + ε with ε = ±σ fresh every step (eqs. 3–4, 15–16): W ← W − η r a xᵀ, a ← a − η r W x",
      "sgd": "the same with σ = 0: the lazy baseline (Allen-Zhu et al., cited in §3.2)",
      "gd": "full-batch gradient descent on clean labels (phase II analysis, eqs. 47–50)",
      "oscillation":
        "§3.2.1 simulation: W by full-batch GD, a_i forced through the chain 0 → ±lr^¼ → 0 (eqs. 5–6)",
      "periodic": "label-noise SGD with the noise on for `period` steps, off for `period` steps",
    },
    source: "paper §3, §3.2.1; periodic variant from the released code's README",
  },
  m: {
    kind: "int",
    default: 1000,
    min: 1,
    max: 65536,
    doc: "width: number of hidden neurons (rows of W)",
    source: "released code README (network width 1000)",
  },
  d: {
    kind: "int",
    default: 20,
    min: 1,
    max: 4096,
    doc: "input dimension",
    source: "released code README (input dimension 20)",
  },
  n: {
    kind: "int",
    default: 200,
    min: 1,
    max: 1 << 20,
    doc: "training examples (ignored when data_mode = online)",
    source: "released code README (200 samples)",
  },
  n_test: {
    kind: "int",
    default: 200,
    min: 1,
    max: 1 << 20,
    doc: "fresh test examples for test_loss",
    source: "notes §7 suggested set-up (a test set of n fresh samples); not stated by the paper",
  },
  data_mode: {
    kind: "enum",
    values: ["finite", "online"],
    default: "finite",
    doc: "sample from n fixed points with replacement, or a fresh x ~ N(0, I) every step",
    valueDocs: {
      finite: "ξ_t uniform in [n] with replacement (eq. 3); gd uses the n-point gradient",
      online:
        "fresh x every step, as the phase-I proof assumes; gd and oscillation use the population gradient θ − θ*",
    },
    source:
      "notes §2.1: the update samples a finite set, the phase-I proof treats samples as fresh",
  },
  theta_norm: {
    kind: "number",
    default: 0,
    min: 0,
    max: 100,
    doc: "‖θ*‖; 0 means m^(−1/4), the largest norm assumption A4 allows",
    source: "assumption (A4) ‖θ*‖ ≤ m^(−1/4); the paper gives no distribution for θ*",
  },
  lr: {
    kind: "number",
    default: 0.001,
    min: 1e-9,
    max: 10,
    perReplica: true,
    log: true,
    doc: "learning rate η (also sets the oscillation amplitude lr^¼)",
    source: "released code README (learning rate 0.001)",
  },
  sigma: {
    kind: "number",
    default: 4,
    min: 0,
    max: 1e3,
    perReplica: true,
    log: true,
    doc: "label-noise level σ: ε = ±σ (or σ·N(0,1) with noise = gaussian)",
    source: "released code README (noise level 4)",
    appliesTo: NOISY_ALGOS,
  },
  noise: {
    kind: "enum",
    values: ["rademacher", "gaussian"],
    default: "rademacher",
    doc: "label-noise distribution",
    valueDocs: {
      rademacher: "ε uniform on {−σ, +σ}, as the paper (§3.1)",
      gaussian: "ε ~ N(0, σ²), same variance (an option, not in the paper)",
    },
    source: "paper §3.1",
    appliesTo: NOISY_ALGOS,
  },
  period: {
    kind: "int",
    default: 5000,
    min: 1,
    max: 1e9,
    doc: "periodic: noise on for steps [2kP, (2k+1)P), off for [(2k+1)P, (2k+2)P)",
    source: "released code README (label noise switched on and off every 5,000 steps)",
    appliesTo: ["periodic"],
  },
  switch_to_gd_at: {
    kind: "int",
    default: 0,
    min: 0,
    max: 1e10,
    doc:
      "from this step on, train by full-batch GD on clean labels (the paper's phase II); 0 = never",
    source: "paper §3.3 (phase II is analysed under GD 'for simplicity')",
    appliesTo: SGD_ALGOS,
  },
  seed: {
    kind: "int",
    default: 0,
    min: 0,
    max: 0xFFFFFFFE,
    doc: "data seed (θ*, training and test sets, sample order); also keys each replica's noise",
  },
  data: {
    kind: "enum",
    values: ["shared", "per-replica"],
    default: "shared",
    doc: "all replicas see the seed's θ*, data and sample order, or replica k uses seed+k",
    valueDocs: {
      shared: "one θ*, data set and sample sequence for all replicas (they differ by noise)",
      "per-replica": "replica k draws its θ*, data and sample sequence from seed+k",
    },
  },
  init: {
    kind: "enum",
    values: ["shared", "per-replica"],
    default: "shared",
    doc: "all replicas start from the same W(0), a(0), or each replica draws its own",
    valueDocs: {
      shared: "same initialisation for every replica: a σ grid is a controlled comparison",
      "per-replica": "replica k's initialisation is keyed by (seed, k): seeds as replicas",
    },
  },
  frame_every: {
    kind: "int",
    default: 10,
    min: 0,
    max: 1e9,
    doc: "snapshots between per-neuron frames (also at step 0 and the last step); 0 = no frames",
  },
};

export interface LinearPrepared {
  algo: LinearAlgo;
  algoCode: number;
  m: number;
  d: number;
  /** Training set size (0 when online). */
  n: number;
  nTest: number;
  online: boolean;
  replicas: number;
  dataPerReplica: boolean;
  initPerReplica: boolean;
  /** [dataSets × n × d], float32-exact; empty when online. */
  X: Float32Array;
  /** [dataSets × n]. */
  y: Float32Array;
  /** [dataSets × nTest × d]. */
  Xtest: Float32Array;
  /** [dataSets × nTest]. */
  ytest: Float32Array;
  /** [dataSets × d]. */
  thetaStar: Float32Array;
  /** [initSets × m × d]: W(0), row-major by neuron. */
  W0: Float32Array;
  /** [replicas × m]: a(0) (per replica because the oscillation amplitude depends on lr). */
  A0: Float32Array;
  lr: Float64Array;
  sigma: Float64Array;
  /** float32(lr^¼) per replica: the forced chain's amplitude, identical on every backend. */
  chainAmp: Float64Array;
  gaussianNoise: boolean;
  period: number;
  /** First step trained by GD; Infinity when never. */
  gdFrom: number;
  seed: number;
  frameEvery: number;
  /** Global index of replica 0 (RunSpec.firstReplica): keys and data seeds use firstReplica + k. */
  firstReplica: number;
}

export function dataSeedOf(seed: number, replica: number, perReplicaData: boolean): number {
  return (perReplicaData ? seed + replica : seed) >>> 0;
}

/** ‖θ*‖ in force: the parameter, or m^(−1/4) when it is 0. */
export function thetaNormOf(thetaNorm: number, m: number): number {
  return thetaNorm > 0 ? thetaNorm : Math.pow(m, -0.25);
}

/** θ* for one data seed: a Philox Gaussian direction scaled to `norm`, rounded to float32. */
export function generateThetaStar(dataSeed: number, d: number, norm: number): Float32Array {
  const z = normals(dataSeed, DATA_REPLICA, 0, STREAM_THETA, d);
  let s = 0;
  for (const v of z) s += v * v;
  const scale = norm / Math.sqrt(s);
  return Float32Array.from(z, (v) => v * scale);
}

/** `rows` inputs x ~ N(0, I_d) from one stream, float32, and their labels float32(<θ*, x>). */
export function generateRegressionSet(
  dataSeed: number,
  stream: number,
  rows: number,
  thetaStar: Float32Array,
) {
  const d = thetaStar.length;
  const X = new Float32Array(rows * d);
  const y = new Float32Array(rows);
  const z = new Float64Array(d);
  for (let i = 0; i < rows; i++) {
    normals(dataSeed, DATA_REPLICA, i, stream, d, z);
    let label = 0;
    for (let k = 0; k < d; k++) {
      X[i * d + k] = z[k];
      label += thetaStar[k] * X[i * d + k];
    }
    y[i] = label;
  }
  return { X, y };
}

/** The online sample of step t, x_t (float32-rounded) for one data seed. */
export function onlineSample(dataSeed: number, step: number, d: number, out: Float64Array) {
  normals(dataSeed, DATA_REPLICA, step, STREAM_ONLINE, d, out);
  for (let k = 0; k < d; k++) out[k] = Math.fround(out[k]);
  return out;
}

/** NTK initialisation (§3.1): w_ij ~ N(0, 1/d), float32, keyed as the header says. */
export function generateW0(seed: number, keyReplica: number, m: number, d: number) {
  const W = new Float32Array(m * d);
  const z = new Float64Array(d);
  const scale = 1 / Math.sqrt(d);
  for (let i = 0; i < m; i++) {
    normals(seed, keyReplica, i, STREAM_INIT_W, d, z);
    for (let k = 0; k < d; k++) W[i * d + k] = z[k] * scale;
  }
  return W;
}

/** NTK initialisation of the second layer: a_i ~ N(0, 1/m), float32. */
export function generateA0(seed: number, keyReplica: number, m: number): Float32Array {
  const z = normals(seed, keyReplica, 0, STREAM_INIT_A, m);
  const scale = 1 / Math.sqrt(m);
  return Float32Array.from(z, (v) => v * scale);
}

/** §3.2.1: a_i(0) = +c or −c with probability 1/4 each, 0 with probability 1/2. */
export function generateChainA0(seed: number, keyReplica: number, m: number, c: number) {
  const a = new Float32Array(m);
  for (let i = 0; i < m; i++) {
    const u = uniformIndex(philoxBlock(seed, keyReplica, i, STREAM_INIT_CHAIN, 0)[0], 4);
    a[i] = u === 0 ? c : u === 1 ? -c : 0;
  }
  return a;
}

export function prepareLinearLabelNoise(spec: RunSpec): LinearPrepared {
  const p = spec.params;
  const m = p.m as number, d = p.d as number;
  const online = p.data_mode === "online";
  const n = online ? 0 : p.n as number;
  const nTest = p.n_test as number;
  const R = spec.replicas;
  const seed = p.seed as number;
  const dataPerReplica = p.data === "per-replica";
  const initPerReplica = p.init === "per-replica";
  const firstReplica = spec.firstReplica ?? 0;
  const dataSets = dataPerReplica ? R : 1;
  const initSets = initPerReplica ? R : 1;
  const norm = thetaNormOf(p.theta_norm as number, m);
  const X = new Float32Array(dataSets * n * d);
  const y = new Float32Array(dataSets * n);
  const Xtest = new Float32Array(dataSets * nTest * d);
  const ytest = new Float32Array(dataSets * nTest);
  const thetaStar = new Float32Array(dataSets * d);
  for (let s = 0; s < dataSets; s++) {
    const ds = dataSeedOf(seed, firstReplica + s, dataPerReplica);
    const th = generateThetaStar(ds, d, norm);
    thetaStar.set(th, s * d);
    const train = generateRegressionSet(ds, STREAM_TRAIN, n, th);
    X.set(train.X, s * n * d);
    y.set(train.y, s * n);
    const test = generateRegressionSet(ds, STREAM_TEST, nTest, th);
    Xtest.set(test.X, s * nTest * d);
    ytest.set(test.y, s * nTest);
  }
  const algo = p.algo as LinearAlgo;
  const lr = perReplica(p.lr, R);
  const chainAmp = lr.map((v) => Math.fround(Math.pow(v, 0.25)));
  const W0 = new Float32Array(initSets * m * d);
  for (let s = 0; s < initSets; s++) {
    W0.set(generateW0(seed, initPerReplica ? firstReplica + s : DATA_REPLICA, m, d), s * m * d);
  }
  const A0 = new Float32Array(R * m);
  for (let r = 0; r < R; r++) {
    const key = initPerReplica ? firstReplica + r : DATA_REPLICA;
    A0.set(
      algo === "oscillation"
        ? generateChainA0(seed, key, m, chainAmp[r])
        : generateA0(seed, key, m),
      r * m,
    );
  }
  const sigma = algo === "sgd" ? new Float64Array(R) : perReplica(p.sigma, R);
  const switchAt = p.switch_to_gd_at as number;
  return {
    algo,
    algoCode: ALGO_CODE[algo],
    m,
    d,
    n,
    nTest,
    online,
    replicas: R,
    dataPerReplica,
    initPerReplica,
    X,
    y,
    Xtest,
    ytest,
    thetaStar,
    W0,
    A0,
    lr,
    sigma,
    chainAmp,
    gaussianNoise: p.noise === "gaussian",
    period: p.period as number,
    gdFrom: SGD_ALGOS.includes(algo) && switchAt > 0 ? switchAt : Infinity,
    seed,
    frameEvery: p.frame_every as number,
    firstReplica,
  };
}

/** What a step does, by algorithm and step: the one place the schedule of phases lives. */
export type StepKind = "sgd" | "gd" | "oscillation";

export function stepKind(prep: LinearPrepared, step: number): StepKind {
  if (prep.algo === "oscillation") return "oscillation";
  if (prep.algo === "gd" || step >= prep.gdFrom) return "gd";
  return "sgd";
}

/** Whether label noise is on at `step` (only meaningful for SGD steps). */
export function noiseOn(prep: LinearPrepared, step: number): boolean {
  if (prep.algo === "periodic") return Math.floor(step / prep.period) % 2 === 0;
  return prep.algo === "label-noise-sgd";
}

/** Switch to GD and the periodic on/off switches, at the steps they take effect. */
export function plannedLinearEvents(spec: RunSpec): RunEvent[] {
  const p = spec.params;
  const events: RunEvent[] = [];
  const algo = p.algo as LinearAlgo;
  const switchAt = p.switch_to_gd_at as number;
  const gdFrom = SGD_ALGOS.includes(algo) && switchAt > 0 ? switchAt : Infinity;
  const end = Math.min(spec.steps, gdFrom);
  if (algo === "periodic") {
    const period = p.period as number;
    let listed = 0;
    for (let at = period; at < end; at += period) {
      if (listed++ === MAX_LISTED_TOGGLES) {
        events.push({
          type: "note",
          step: at,
          detail: `label noise keeps switching every ${period} steps; later switches not listed`,
        });
        break;
      }
      if ((at / period) % 2 === 1) {
        events.push({ type: "noise_off", step: at, detail: `periodic: off for ${period} steps` });
      } else events.push({ type: "phase_change", step: at, phase: "noise_on" });
    }
  }
  if (gdFrom < spec.steps) {
    events.push({
      type: "phase_change",
      step: gdFrom,
      phase: "gd",
      detail: "switch to full-batch GD on clean labels (phase II)",
    });
  }
  return events;
}
