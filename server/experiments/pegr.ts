/**
 * Per-example gradient regularisation (Meng, Cao, Zou, "Per-Example Gradient Regularization
 * Improves Learning Signals from Noisy Data"), §2–5 and the synthetic experiment of §4.1:
 * two-patch signal–noise data x = [y·μ, ξ], a CNN with 2m ReLU² filters and a fixed ±1/m
 * second layer, trained by full-batch GD on the logistic loss (`gd`), on the PEGR objective
 * L + (λ/2n) Σ_i ‖∇ℓ_i‖² switched off at `pegr_off` (`pegr`), or on the FGR objective
 * L + λ‖∇L‖² (`fgr`). Notes: ../shared/papers/seed-004-pegr.md; the mathematics is in
 * pegr_model.ts, the presets of both readings of §4.1 in pegr_presets.ts.
 *
 * Random draws (all data-side: key = (seed_s, DATA_REPLICA), see server/rng/philox.ts, with
 * seed_s = seed for shared data and seed + k for replica k when data = per-replica):
 *   stream 0, counter step i, block 0, word 0:   y_i = rademacher(word)       training label i
 *   stream 1, counter step i:  g = normals(·, d)  z_i = g with z_i[0] := 0   training noise i
 *   stream 2, counter step t, block 0, word 0:   test label t
 *   stream 3, counter step t:  test noise direction z_t, as stream 1
 *   stream 4, counter step q:  row q of G0 = normals(·, d)                  initial filter q
 * All these normals are rounded to float32 and shared by every backend. A replica with noise
 * level σ_p and init scale σ0 then uses μ = mu_norm·e_1, ξ_i = σ_p·z_i and W0 = σ0·G0, so
 * ξ_i ~ N(0, σ_p²(I − μμᵀ/‖μ‖²)) is exactly orthogonal to μ (Definition 2.1), and replicas
 * that share data (e.g. a σ_p sweep, or GD vs PEGR runs with the same seed) share the
 * samples and the initial directions. Training itself is deterministic: no further draws.
 *
 * Step semantics: update t (from W^(t) to W^(t+1)) uses λ when t < pegr_off and λ = 0
 * afterwards, so "closed at epoch 800" means updates 0…799 are regularised; the switch-off
 * is a planned `phase_change` event at step pegr_off.
 */
import { type ParamSchema, perReplica, SpecError } from "./schema.ts";
import type {
  ExperimentDefinition,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
} from "./types.ts";
import { DATA_REPLICA, normals, rademacher, word } from "../rng/philox.ts";
import { steppedReferenceSession } from "../engine/reference.ts";
import { stateArray } from "../engine/session_state.ts";
import {
  addScaled,
  applyStep,
  choleskySolve,
  directionNormSq,
  dot,
  expand,
  filterSign,
  forward,
  gramCholesky,
  hessianVectorProduct,
  lossGradient,
  makeProblem,
  pegrPenalty,
  pegrPenaltyGradient,
  type PegrProblem,
  recoverCoefficients,
  relu,
  trainLoss,
} from "./pegr_model.ts";

export const STREAM_TRAIN_LABEL = 0;
export const STREAM_TRAIN_NOISE = 1;
export const STREAM_TEST_LABEL = 2;
export const STREAM_TEST_NOISE = 3;
export const STREAM_INIT = 4;

export const ALGOS = ["gd", "pegr", "fgr"] as const;
export type PegrAlgo = typeof ALGOS[number];
/** Numeric codes the kernels switch on. */
export const ALGO_CODE: Record<PegrAlgo, number> = { gd: 0, pegr: 1, fgr: 2 };

export const pegrParams: ParamSchema = {
  algo: {
    kind: "enum",
    values: [...ALGOS],
    default: "pegr",
    doc: "training algorithm (all full-batch gradient descent)",
    valueDocs: {
      gd: "standard GD on the logistic loss L_S (λ = 0)",
      pegr: "GD on L_S + (λ/2n) Σ_i ‖∇ℓ_i‖², exact closed-form gradient, off at pegr_off",
      fgr: "GD on L_S + λ‖∇L_S‖² (§4.1), exact Hessian-vector product, off at pegr_off",
    },
    source: "§4.1 compares PEGR, FGR and standard training",
  },
  d: {
    kind: "int",
    default: 400,
    min: 2,
    max: 65536,
    doc: "patch dimension d (x ∈ R^{2d})",
    source: "§4.1 (d = 400)",
  },
  n: {
    kind: "int",
    default: 20,
    min: 1,
    max: 4096,
    doc: "training examples (must be below d for the signal–noise decomposition)",
    source: "§4.1 (n = 20)",
  },
  m: {
    kind: "int",
    default: 10,
    min: 1,
    max: 1024,
    doc: "filters per class sign j = ±1 (2m filters in all)",
    source: "§4.1 (m = 10)",
  },
  mu_norm: {
    kind: "number",
    default: 1,
    min: 1e-6,
    max: 1e3,
    doc: "signal strength ‖μ‖ (μ = ‖μ‖·e_1)",
    source: "§4.1 (‖μ‖² = 1)",
  },
  sigma_p: {
    kind: "number",
    default: 1,
    min: 1e-6,
    max: 1e3,
    perReplica: true,
    doc: "noise level σ_p: ξ ~ N(0, σ_p²(I − μμᵀ/‖μ‖²))",
    source: "§4.1 sweeps σ_p ∈ {0.1, 0.5, 1, 1.5}",
  },
  sigma0: {
    kind: "number",
    default: 0.01,
    min: 1e-12,
    max: 10,
    perReplica: true,
    log: true,
    doc: "initialisation std σ0 of every filter entry",
    source:
      "§4.1: 0.01 for σ_p ∈ {0.5, 1}, 0.001 for σ_p = 1.5; not given for σ_p = 0.1 (notes use 0.01)",
  },
  lr: {
    kind: "number",
    default: 0.02,
    min: 1e-9,
    max: 100,
    perReplica: true,
    log: true,
    doc: "learning rate η",
    source: "§4.1 (η = 0.02)",
  },
  lambda_mode: {
    kind: "enum",
    values: ["fixed", "theory"],
    default: "fixed",
    doc: "how λ is chosen: the number `lambda`, or the theory's λ = 1/(σ_p√d) per replica",
    valueDocs: {
      fixed: "λ = lambda (the experiments of §4.1 use 0.01)",
      theory: "λ = 1/(σ_p·√d), Thm 3.2 and Condition 3.1 (lambda is ignored)",
    },
    source: "§4.1 sets λ = 0.01; §3 sets λ = σ_p⁻¹d^{−1/2}",
    appliesTo: ["pegr", "fgr"],
  },
  lambda: {
    kind: "number",
    default: 0.01,
    min: 0,
    max: 1e6,
    perReplica: true,
    log: true,
    doc: "regularisation strength λ when lambda_mode = fixed",
    source: "§4.1 (λ = 0.01)",
    appliesTo: ["pegr", "fgr"],
  },
  pegr_off: {
    kind: "int",
    default: 800,
    min: 0,
    max: 1e10,
    doc: "step at which the regulariser is switched off (updates t < pegr_off use λ, later λ = 0)",
    source:
      "§4.1 closes PEGR at epoch 800; the paper does not say whether FGR is closed too (the lab closes both)",
    appliesTo: ["pegr", "fgr"],
  },
  fgr_convention: {
    kind: "enum",
    values: ["experiments", "section5"],
    default: "experiments",
    doc: "FGR penalty: λ‖(1/n)Σ∇ℓ_i‖² (§4.1) or (λ/2)‖∇L_S‖² (§5.4)",
    valueDocs: {
      experiments: "λ‖∇L_S‖², gradient 2λ·H∇L_S (the formula of §4.1)",
      section5: "(λ/2)‖∇L_S‖², gradient λ·H∇L_S (the analysis of §5.4)",
    },
    source: "notes §4c: the paper uses both conventions",
    appliesTo: ["fgr"],
  },
  n_test: {
    kind: "int",
    default: 2000,
    min: 1,
    max: 100000,
    doc: "fresh test examples from the same distribution (clean labels)",
    source: "not given in the paper; notes §7 suggest 2 000–10 000",
  },
  seed: {
    kind: "int",
    default: 0,
    min: 0,
    max: 0xFFFFFFFE,
    doc: "data seed: training set, test set and initial filter directions",
  },
  data: {
    kind: "enum",
    values: ["shared", "per-replica"],
    default: "shared",
    doc: "all replicas use the seed's data and initial directions, or replica k uses seed + k",
    valueDocs: {
      shared: "one data set and one G0 for every replica (sweeps over σ_p, λ, lr, σ0)",
      "per-replica": "replica k uses data seed seed + k (seeds as replicas)",
    },
  },
};

/** One data set: standard-normal directions the replicas scale by their own σ_p and σ0. */
export interface PegrDataSet {
  y: Float32Array;
  /** Row-major [n × d] noise directions z_i (z_i[0] = 0), float32-exact. */
  Z: Float32Array;
  yTest: Float32Array;
  ZTest: Float32Array;
  /** Row-major [2m × d] initial filter directions. */
  G0: Float32Array;
}

export interface PegrPrepared {
  algo: PegrAlgo;
  algoCode: number;
  d: number;
  n: number;
  m: number;
  nTest: number;
  replicas: number;
  dataPerReplica: boolean;
  /** Concatenated data sets ([sets × …]); set s = dataPerReplica ? replica : 0. */
  y: Float32Array;
  Z: Float32Array;
  yTest: Float32Array;
  ZTest: Float32Array;
  G0: Float32Array;
  /** [sets × n × n] Gram matrix <z_i, z_k> (FGR's <ξ_i, v> in kernels: σ_p² times this). */
  zGram: Float64Array;
  /** [sets × n × n] its inverse (coefficient recovery). */
  zGramInverse: Float64Array;
  muNorm: number;
  sigmaP: Float64Array;
  sigma0: Float64Array;
  lr: Float64Array;
  /** λ in force while the regulariser is on (0 for gd), per replica. */
  lambda: Float64Array;
  /** First update index with λ = 0. */
  regOff: number;
  /** Multiplier of λ·H∇L_S in the FGR update: 2 (§4.1) or 1 (§5.4). */
  fgrScale: number;
  seed: number;
}

function rowOfNormals(
  seed: number,
  stream: number,
  row: number,
  d: number,
  out: Float32Array,
  off: number,
) {
  const g = normals(seed >>> 0, DATA_REPLICA, row, stream, d);
  for (let k = 0; k < d; k++) out[off + k] = g[k];
}

/** The data set of one seed, exactly as the header's draw protocol says. */
export function generateDataSet(
  seed: number,
  n: number,
  d: number,
  m: number,
  nTest: number,
): PegrDataSet {
  const y = new Float32Array(n), Z = new Float32Array(n * d);
  const yTest = new Float32Array(nTest), ZTest = new Float32Array(nTest * d);
  const G0 = new Float32Array(2 * m * d);
  for (let i = 0; i < n; i++) {
    y[i] = rademacher(word(seed >>> 0, DATA_REPLICA, i, STREAM_TRAIN_LABEL));
    rowOfNormals(seed, STREAM_TRAIN_NOISE, i, d, Z, i * d);
    Z[i * d] = 0; // projection I − μμᵀ/‖μ‖² with μ ∝ e_1
  }
  for (let t = 0; t < nTest; t++) {
    yTest[t] = rademacher(word(seed >>> 0, DATA_REPLICA, t, STREAM_TEST_LABEL));
    rowOfNormals(seed, STREAM_TEST_NOISE, t, d, ZTest, t * d);
    ZTest[t * d] = 0;
  }
  for (let q = 0; q < 2 * m; q++) rowOfNormals(seed, STREAM_INIT, q, d, G0, q * d);
  return { y, Z, yTest, ZTest, G0 };
}

/** λ per replica: `lambda`, or 1/(σ_p√d) in theory mode; 0 for plain GD. */
export function effectiveLambda(spec: RunSpec): Float64Array {
  const p = spec.params, R = spec.replicas;
  if (p.algo === "gd") return new Float64Array(R);
  if (p.lambda_mode === "theory") {
    const sp = perReplica(p.sigma_p, R);
    return sp.map((s) => 1 / (s * Math.sqrt(p.d as number)));
  }
  return perReplica(p.lambda, R);
}

export function preparePegr(spec: RunSpec): PegrPrepared {
  const p = spec.params;
  const d = p.d as number, n = p.n as number, m = p.m as number, nTest = p.n_test as number;
  if (n >= d) {
    throw new SpecError([{
      field: "params.n",
      message:
        `must be below d = ${d}: the n noise patches live in the (d−1)-dimensional complement of μ`,
    }]);
  }
  const R = spec.replicas;
  const seed = p.seed as number;
  const dataPerReplica = p.data === "per-replica";
  const sets = dataPerReplica ? R : 1;
  // A shard (RunSpec.firstReplica) draws replica k's data as the whole run's replica first + k.
  const seedOfSet = dataPerReplica ? seed + (spec.firstReplica ?? 0) : seed;
  const y = new Float32Array(sets * n), Z = new Float32Array(sets * n * d);
  const yTest = new Float32Array(sets * nTest), ZTest = new Float32Array(sets * nTest * d);
  const G0 = new Float32Array(sets * 2 * m * d);
  const zGram = new Float64Array(sets * n * n);
  const zGramInverse = new Float64Array(sets * n * n);
  for (let s = 0; s < sets; s++) {
    const ds = generateDataSet(seedOfSet + s, n, d, m, nTest);
    y.set(ds.y, s * n);
    Z.set(ds.Z, s * n * d);
    yTest.set(ds.yTest, s * nTest);
    ZTest.set(ds.ZTest, s * nTest * d);
    G0.set(ds.G0, s * 2 * m * d);
    const G = gramOf(ds.Z, n, d);
    zGram.set(G, s * n * n);
    zGramInverse.set(inverseSpd(G, n), s * n * n);
  }
  const algo = p.algo as PegrAlgo;
  return {
    algo,
    algoCode: ALGO_CODE[algo],
    d,
    n,
    m,
    nTest,
    replicas: R,
    dataPerReplica,
    y,
    Z,
    yTest,
    ZTest,
    G0,
    zGram,
    zGramInverse,
    muNorm: p.mu_norm as number,
    sigmaP: perReplica(p.sigma_p, R),
    sigma0: perReplica(p.sigma0, R),
    lr: perReplica(p.lr, R),
    lambda: effectiveLambda(spec),
    regOff: p.pegr_off as number,
    fgrScale: p.fgr_convention === "section5" ? 1 : 2,
    seed,
  };
}

function gramOf(Z: Float32Array, n: number, d: number): Float64Array {
  const G = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k <= i; k++) G[i * n + k] = G[k * n + i] = dot(Z, i * d, Z, k * d, d);
  }
  return G;
}

function inverseSpd(G: Float64Array, n: number): Float64Array {
  const L = gramCholesky(G, n);
  const inv = new Float64Array(n * n);
  const e = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    e.fill(0);
    e[c] = 1;
    const col = choleskySolve(L, e, n);
    for (let i = 0; i < n; i++) inv[i * n + c] = col[i];
  }
  return inv;
}

// ---------------------------------------------------------------------------------------
// The float64 reference, one replica at a time.

/** A replica's float64 view of its data: μ, ξ_i = σ_p z_i, y, and W0 = σ0·G0. */
export interface PegrReplica {
  problem: PegrProblem;
  W0: Float64Array;
  /** Cholesky factor of the ξ Gram matrix, for the coefficient recovery. */
  chol: Float64Array;
  set: number;
  sigmaP: number;
  lr: number;
  lambda: number;
}

export function replicaView(prep: PegrPrepared, replica: number): PegrReplica {
  const { d, n, m } = prep;
  const set = prep.dataPerReplica ? replica : 0;
  const sigmaP = prep.sigmaP[replica];
  const mu = new Float64Array(d);
  mu[0] = prep.muNorm;
  const xi = new Float64Array(n * d);
  for (let k = 0; k < n * d; k++) xi[k] = sigmaP * prep.Z[set * n * d + k];
  const y = Float64Array.from(prep.y.subarray(set * n, (set + 1) * n));
  const problem = makeProblem(mu, xi, y, m);
  const W0 = new Float64Array(2 * m * d);
  const s0 = prep.sigma0[replica];
  for (let k = 0; k < W0.length; k++) W0[k] = s0 * prep.G0[set * 2 * m * d + k];
  return {
    problem,
    W0,
    chol: gramCholesky(problem.xiGram, n),
    set,
    sigmaP,
    lr: prep.lr[replica],
    lambda: prep.lambda[replica],
  };
}

/** λ in force for update t (PEGR/FGR are on for t < pegr_off). */
export function lambdaAt(prep: PegrPrepared, rep: PegrReplica, t: number): number {
  return t < prep.regOff ? rep.lambda : 0;
}

/**
 * The descent direction of update t, as the paper writes each objective's gradient:
 *   gd:   ∇L_S
 *   pegr: ∇L_S + λ ∇[(1/2n) Σ_i ‖∇ℓ_i‖²]   (Lemma 5.1 with the corrected 1/m² factor)
 *   fgr:  ∇L_S + c·λ·H ∇L_S, c = 2 for λ‖∇L_S‖² (§4.1) or 1 for (λ/2)‖∇L_S‖² (§5.4)
 */
export function pegrDirection(prep: PegrPrepared, rep: PegrReplica, W: Float64Array, t: number) {
  const p = rep.problem;
  const fw = forward(W, p);
  const dir = lossGradient(fw, p);
  const lambda = lambdaAt(prep, rep, t);
  if (lambda > 0 && prep.algo === "pegr") {
    addScaled(dir, pegrPenaltyGradient(fw, p), lambda);
  } else if (lambda > 0 && prep.algo === "fgr") {
    // H is applied to ∇L_S (dir before the addition: arguments are evaluated first).
    addScaled(dir, hessianVectorProduct(fw, p, expand(dir, p)), prep.fgrScale * lambda);
  }
  return dir;
}

/** W^(t+1) = W^(t) − η·direction, in place. */
export function pegrStep(prep: PegrPrepared, rep: PegrReplica, W: Float64Array, t: number): void {
  applyStep(W, pegrDirection(prep, rep, W, t), rep.lr, rep.problem);
}

export const PEGR_METRICS = [
  {
    name: "train_loss",
    doc: "L_S(W) = (1/n) Σ_i log(1 + exp(−y_i f(W, x_i))) (Fig. 1)",
    scale: "log" as const,
  },
  { name: "signal", doc: "max_{j,r} |<w_{j,r}, μ>| (Fig. 2)", scale: "log" as const },
  {
    name: "noise",
    doc: "max_{j,r,i} <w_{j,r}, ξ_i>, no absolute value (Fig. 3)",
    scale: "log" as const,
  },
  {
    name: "test_accuracy",
    doc: "fraction of the n_test fresh examples with y·f(W, x) > 0 (Fig. 4)",
    scale: "linear" as const,
  },
  {
    name: "grad_norm_sq",
    doc: "‖∇L_S(W)‖_F², the loss gradient (Thm 3.2/3.3)",
    scale: "log" as const,
  },
  {
    name: "regulariser",
    doc:
      "the algorithm's penalty as it enters the objective at this step: (λ/2n)Σ‖∇ℓ_i‖² (pegr), λ‖∇L_S‖² or (λ/2)‖∇L_S‖² (fgr); 0 for gd and after pegr_off",
    scale: "log" as const,
  },
  {
    name: "mean_example_grad_sq",
    doc: "(1/n) Σ_i ‖∇_W ℓ_i‖_F² = (1/n) Σ_i 4ℓ'_i²ζ_i/m², what PEGR penalises (every algorithm)",
    scale: "log" as const,
  },
  {
    name: "gamma_max",
    doc: "max_{j,r} γ_{j,r} (Def. 5.2, recovered from W − W0)",
    scale: "linear" as const,
  },
  {
    name: "rho_bar_max",
    doc: "max_{j = y_i} ρ_{j,r,i}: same-class noise memorisation (Def. 5.2)",
    scale: "linear" as const,
  },
  { name: "rho_under_min", doc: "min_{j ≠ y_i} ρ_{j,r,i} (Def. 5.2)", scale: "linear" as const },
  {
    name: "lambda_xi_sq_over_m",
    doc:
      "λ·mean_i‖ξ_i‖²/m with the configured λ: PEGR suppresses noise when it exceeds 1 (notes §4b)",
    scale: "linear" as const,
  },
];

/** Every metric of one replica at step t, float64. */
export function pegrMetrics(
  prep: PegrPrepared,
  rep: PegrReplica,
  W: Float64Array,
  t: number,
  /** Test accuracy computed elsewhere (the wasm kernel does it with SIMD), else here. */
  testAccuracyValue?: number,
): Record<string, number> {
  const p = rep.problem;
  const { d, n, m } = prep;
  const fw = forward(W, p);
  const grad = lossGradient(fw, p);
  const gradNormSq = directionNormSq(grad, p);
  const penalty = pegrPenalty(fw, p);
  const lambda = lambdaAt(prep, rep, t);
  const regulariser = prep.algo === "pegr"
    ? lambda * penalty
    : prep.algo === "fgr"
    ? lambda * (prep.fgrScale / 2) * gradNormSq
    : 0;
  let signal = 0, noise = -Infinity;
  for (let q = 0; q < 2 * m; q++) {
    signal = Math.max(signal, Math.abs(dot(W, q * d, p.mu, 0, d)));
    for (let i = 0; i < n; i++) noise = Math.max(noise, fw.noiseIp[q * n + i]);
  }
  const { gamma, rho } = recoverCoefficients(W, rep.W0, p, rep.chol);
  let gammaMax = -Infinity, rhoBarMax = -Infinity, rhoUnderMin = Infinity;
  for (let q = 0; q < 2 * m; q++) {
    gammaMax = Math.max(gammaMax, gamma[q]);
    const j = filterSign(q, m);
    for (let i = 0; i < n; i++) {
      if (j === p.y[i]) rhoBarMax = Math.max(rhoBarMax, rho[q * n + i]);
      else rhoUnderMin = Math.min(rhoUnderMin, rho[q * n + i]);
    }
  }
  let xiSq = 0;
  for (let i = 0; i < n; i++) xiSq += p.xiNormSq[i] / n;
  return {
    train_loss: trainLoss(fw),
    signal,
    noise,
    test_accuracy: testAccuracyValue ?? testAccuracy(prep, rep, W),
    grad_norm_sq: gradNormSq,
    regulariser,
    mean_example_grad_sq: 2 * penalty,
    gamma_max: gammaMax,
    rho_bar_max: rhoBarMax,
    rho_under_min: rhoUnderMin,
    lambda_xi_sq_over_m: rep.lambda * xiSq / m,
  };
}

/** Fraction of test points with y·f(W, x) > 0, where x = [y μ, σ_p z]. */
export function testAccuracy(prep: PegrPrepared, rep: PegrReplica, W: Float64Array): number {
  const { d, m, nTest } = prep;
  const mu = rep.problem.mu;
  const wmu = new Float64Array(2 * m);
  for (let q = 0; q < 2 * m; q++) wmu[q] = dot(W, q * d, mu, 0, d);
  const yOff = rep.set * nTest, zOff = rep.set * nTest * d;
  let correct = 0;
  for (let t = 0; t < nTest; t++) {
    const yt = prep.yTest[yOff + t];
    let f = 0;
    for (let q = 0; q < 2 * m; q++) {
      const a = relu(yt * wmu[q]);
      const b = relu(rep.sigmaP * dot(W, q * d, prep.ZTest, zOff + t * d, d));
      f += filterSign(q, m) * (a * a + b * b);
    }
    if (yt * f > 0) correct++;
  }
  return correct / nTest;
}

function referenceSession(prep: PegrPrepared, spec: RunSpec, state?: SessionState): KernelSession {
  const reps = Array.from({ length: prep.replicas }, (_, r) => replicaView(prep, r));
  const states = reps.map((rep) => Float64Array.from(rep.W0));
  const size = 2 * prep.m * prep.d;
  let step = state?.step ?? 0;
  return steppedReferenceSession({
    spec,
    state,
    // Checkpoint: W, [R × 2m × d] (filters j=+1 first, then j=−1, as W0).
    save: () => {
      const W = new Float64Array(prep.replicas * size);
      states.forEach((s, r) => W.set(s, r * size));
      return { arrays: { W } };
    },
    load: (st) => {
      const W = stateArray(st, "W", prep.replicas * size);
      states.forEach((s, r) => s.set(W.subarray(r * size, r * size + size)));
    },
    metricNames: PEGR_METRICS.map((x) => x.name),
    stepReplica: (r, t) => {
      pegrStep(prep, reps[r], states[r], t);
      return states[r];
    },
    metricsOf: (r) => pegrMetrics(prep, reps[r], states[r], step),
    afterStep: (t) => {
      step = t;
      return [];
    },
  });
}

export function pegrPlannedEvents(spec: RunSpec): RunEvent[] {
  const off = spec.params.pegr_off as number;
  if (spec.params.algo === "gd" || off <= 0 || off >= spec.steps) return [];
  return [{
    type: "phase_change",
    step: off,
    phase: "regulariser_off",
    detail: `${String(spec.params.algo).toUpperCase()} switched off: λ = 0 from update ${off} on`,
  }];
}

export const pegr: ExperimentDefinition<PegrPrepared> = {
  id: "pegr",
  title: "PEGR: per-example gradient regularisation on the two-patch signal–noise CNN",
  paper:
    "Meng, Cao, Zou. Per-Example Gradient Regularization Improves Learning Signals from Noisy Data. 2023",
  notes: "seed-004-pegr.md",
  params: pegrParams,
  metrics: PEGR_METRICS,
  defaults: { steps: 1500, every: 10, replicas: 1 },
  prepare: preparePegr,
  reference: referenceSession,
  estimateBytes(spec) {
    const p = spec.params;
    const d = p.d as number, n = p.n as number, m = p.m as number, nTest = p.n_test as number;
    const R = spec.replicas;
    const sets = p.data === "per-replica" ? R : 1;
    const snapshots = Math.ceil(spec.steps / Math.max(1, spec.every)) + 1;
    const data = sets * ((n + nTest) * (d + 1) + 2 * m * d + 2 * n * n);
    const state = R * (2 * 2 * m * d + 4 * 2 * m * n + 2 * n);
    return 4 * (data + state + PEGR_METRICS.length * R * Math.min(snapshots, 4096));
  },
  plannedEvents: pegrPlannedEvents,
};
