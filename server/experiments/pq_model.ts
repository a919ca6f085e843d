/**
 * The P/Q data model and the block-diagonal two-layer ReLU network shared by `large-lr`
 * (Li, Wei, Ma, NeurIPS 2019; notes ../shared/papers/seed-001-initial-large-lr.md) and
 * `label-noise-anneal` (Wei, Ren, Du; notes ../shared/papers/seed-000-synergy-label-noise-
 * annealing.md). Both papers use the same distribution (seed-001 §2.1, seed-000 §2):
 *
 *   y ~ U{±1}; with probability p0 the example is P-only (x2 = 0), with q0 Q-only (x1 = 0),
 *   otherwise it carries both (x1, x2 independent given y).
 *   P: x1 = y·γ0·w* + g conditioned on y⟨w*, g⟩ ≥ 0, g ~ N(0, I/d), γ0 = 1/√d.
 *   Q: x2 = α·z (y = +1) or α·(z + bζ) (y = −1), α ~ U[0, 1], b ~ U{±1},
 *      ‖z‖ = 1, ‖ζ‖ = r = d^(−3/4), ⟨z, ζ⟩ = 0.
 *
 * Coordinates. Initialisation and all noise are isotropic, so the law of every trajectory is
 * invariant under rotations of each block; we therefore take w* = e1 in the x1 block and
 * z = e1, ζ = r·e2 in the x2 block (seed-001 §7 "rotation invariance"). x1 is stored densely
 * (d floats); x2 lies in span{e1, e2} and is stored as its two coordinates (α, α·b·r). The V
 * block keeps all d columns (the d − 2 columns orthogonal to the Q plane only feel weight
 * decay and noise, and count in v_norm), but its products with x2 touch columns 0 and 1
 * only: this is exact, not an approximation.
 *
 * Exact P sampler (no rejection): g ~ N(0, I/d), then reflect g across the hyperplane
 * ⟨w*, ·⟩ = 0 when y⟨w*, g⟩ < 0, i.e. x1[0] = y(γ0 + |g0|), x1[k] = g_k (k ≥ 1).
 *
 * Network (seed-001 §3.1, seed-000 §3): f(x) = r(x1) + g(x2) with
 *   r(x1) = Σ_{j<m_p/2} a_j ReLU(W_j·x1),   g(x2) = Σ_{j<m_q/2} b_j ReLU(V_j·x2),
 * W ∈ R^{(m_p/2)×d}, V ∈ R^{(m_q/2)×d}, second layer a_j i.i.d. uniform on {±1/√m_p} and
 * b_j on {±1/√m_q}, fixed, first layer i.i.d. N(0, τ0²). m is the paper's total width
 * (u ∈ R^m, U = [W; V], m/2 rows per block, |u_j| = m^(−1/2)); the block-diagonal form is the
 * one the proofs use (f = N_W(w, W; x1) + N_V(v, V; x2)). No biases.
 * Separate widths (issue 14): each block is the matching block of a paper network of width
 * m_p (resp. m_q), so it keeps that network's per-block scaling 1/√m_block. Then every
 * width-dependent fact the proofs use holds per block with m := m_block: the noise part's
 * output N_Ũ(x) = Σ_j u_j ReLU(Ũ_j x) has a scale independent of the width (Prop. A.4,
 * τ0‖x‖ log d), each row's gradient is ≲ 1/√m (Prop. A.2), and a block's tangent kernel
 * Σ_j u_j² 1(·)‖x‖² (its speed under GD) does not change when the other block is resized.
 * Scaling both blocks by the total width 1/√(m_p + m_q) instead would slow the narrower
 * block by √(m_block/(m_p + m_q)) and so change the race this option exists to measure.
 * m_p = m_q = m is the paper's network, bit for bit.
 * Loss: logistic ℓ(z) = log(1 + e^(−z)) on z = y·f(x). ReLU'(0) = 1, as 1(v ≥ 0) in the paper.
 *
 * Random draws (Philox4x32-10, lab keying, server/rng/philox.ts):
 *   data, key = (dataSeed, DATA_REPLICA):
 *     train example i: counter (i, DATA_TRAIN_META, 0): words w0..w3:
 *       y = rademacher(w0); u = uniform24(w1): P-only if u < p0, Q-only if u < p0 + q0,
 *       else both; α = uniform24(w2); b = rademacher(w3)
 *     train example i, x1: normals(dataSeed, DATA_REPLICA, i, DATA_TRAIN_X1, d) / √d
 *     test example k < 2·n_test: the same with DATA_TEST_META / DATA_TEST_X1; the subset is
 *       fixed by position (k < n_test: P-only, else both) and w1 is unused.
 *     Values are rounded to float32 once; every backend reads the same float32 arrays.
 *   initialisation, key = (seed, replica), step counter 0:
 *     W0 = τ0 · normals(seed, replica, 0, INIT_W, (m/2)·d) row-major; V0 likewise (INIT_V);
 *     second layer: word j of blocks of stream INIT_SIGN (block j >> 2, word j & 3) gives the
 *     sign of unit j (j < m/2: a_j, else b_{j − m/2}) by rademacher().
 *   per-step noise, key = (seed, replica), counter step = t: streams listed by each experiment
 *     (XI_W, XI_V: gradient noise; PREACT: pre-activation noise; SGD: example index + flip).
 */
import {
  DATA_REPLICA,
  normalAt,
  normals,
  philoxBlock,
  rademacher,
  uniform24,
} from "../rng/philox.ts";
import { type ParamSchema, SpecError } from "./schema.ts";
import { phaseMetrics, type PhaseState } from "./pq_anneal.ts";
import type { RunSpec } from "./types.ts";

export const SUBSET_P_ONLY = 0;
export const SUBSET_Q_ONLY = 1;
export const SUBSET_BOTH = 2;
export const SUBSET_SUFFIXES = ["_p_only", "_q_only", "_both"] as const;

/** Philox streams of the data generator (key = (dataSeed, DATA_REPLICA)). */
export const DATA_TRAIN_META = 0;
export const DATA_TRAIN_X1 = 1;
export const DATA_TEST_META = 2;
export const DATA_TEST_X1 = 3;

/** Philox streams of each replica (key = (seed, replica)). Init uses step counter 0. */
export const STREAM_XI_W = 0;
export const STREAM_XI_V = 1;
export const STREAM_PREACT = 2;
export const STREAM_SGD = 3;
export const STREAM_INIT_W = 16;
export const STREAM_INIT_V = 17;
export const STREAM_INIT_SIGN = 18;

// ---------------------------------------------------------------------------------------
// Parameters shared by both experiments.

/** Data-model and network parameters; each paper-derived scaling is a factor on its rule. */
export function pqModelParams(defaults: {
  d: number;
  kappaSq: number;
  q0: number;
  rScale: number;
  m: number;
  tau0: number;
  nTest: number;
  seed: number;
  /** Where the lab's defaults come from (the experiment's docs page). */
  sweepSource: string;
}): ParamSchema {
  return {
    d: {
      kind: "int",
      default: defaults.d,
      min: 4,
      max: 8192,
      doc: "dimension of each input block (x1 ∈ R^d, x2 ∈ R^d)",
      source:
        `chosen so that 5 seeds of a default run take about a minute on 2 CPU cores (wasm); the theory needs d → ∞ (${defaults.sweepSource})`,
    },
    kappa_sq: {
      kind: "number",
      default: defaults.kappaSq,
      min: 1e-3,
      max: 1,
      log: true,
      doc: "κ² = d/N: the training set has N = round(d/κ²) examples",
      source:
        "Assumption 3.1 (N = d/κ², κ small); 0.2 chosen so that N = 5d and pN = κ²N/2 = d/2 (the paper's pN ≈ d/2)",
    },
    p0_scale: {
      kind: "number",
      default: 1,
      min: 0,
      max: 100,
      doc: "P-only probability p0 = p0_scale·κ²/2 (1 gives the paper's pN ≈ d/2)",
      source: "Assumption 3.1 (p0 = κ²/2)",
    },
    q0: {
      kind: "number",
      default: defaults.q0,
      min: 0,
      max: 1,
      doc: "Q-only probability q0 (the rest carry both patterns)",
      source:
        `Assumption 3.1 (q0 = Θ(1)); 0.6 chosen so that Q-only examples dominate the loss plateau q·log 2; eq. 1.1's 20/20/60 mixture is the preset large-lr-illustrative-mixture (${defaults.sweepSource})`,
    },
    gamma_scale: {
      kind: "number",
      default: 1,
      min: 0,
      max: 100,
      doc: "P margin γ0 = gamma_scale/√d",
      source: "§2 (γ0 = 1/√d); γ0 = 0 (gamma_scale = 0) is the preset large-lr-gamma0-zero",
    },
    r_scale: {
      kind: "number",
      default: defaults.rScale,
      min: 0,
      max: 1e4,
      log: true,
      doc: "Q offset ‖ζ‖ = r = r_scale·d^(−3/4)",
      source:
        `Assumption 3.1 (r = d^(−3/4), r ≪ 1); default ${defaults.rScale}: r = ${defaults.rScale}·d^(−3/4) (${defaults.sweepSource})`,
    },
    m: {
      kind: "int",
      default: defaults.m,
      min: 2,
      max: 8192,
      doc:
        "total hidden width (even): m/2 ReLU units on x1 (W) and m/2 on x2 (V); |u_j| = 1/√m (m_p, m_q override it per block)",
      source:
        `§2 (u ∈ {±m^(−1/2)}^m, U = [W; V]; m ≥ poly(d/τ0), out of reach); ${defaults.m} chosen for speed (${defaults.sweepSource})`,
    },
    m_p: {
      kind: "int",
      default: 0,
      min: 0,
      max: 8192,
      doc:
        "width of the P block as a paper network's m (even): m_p/2 units on x1, |a_j| = 1/√m_p; 0 = m",
      source:
        "issue 14 (separate widths, so that d in the thousands is affordable: the W block costs O(N·m_p·d) per step); 0 keeps the paper's single m. Per-block scaling 1/√m_p: each block is the block of a width-m_p paper network (Prop. A.2, A.4 hold per block; docs/experiments/large-lr.md). The regime search's setting where the small LR learns Q first (d = 512, m_p = 16, m_q = 64, r = 0.88, τ0 = 0.1; large-lr.md table 3d) is the preset large-lr-q-first-d512",
    },
    m_q: {
      kind: "int",
      default: 0,
      min: 0,
      max: 8192,
      doc:
        "width of the Q block as a paper network's m (even): m_q/2 units on x2, |b_j| = 1/√m_q; 0 = m",
      source:
        "issue 14 (separate widths); 0 keeps the paper's single m. Per-block scaling 1/√m_q, as for m_p",
    },
    tau0: {
      kind: "number",
      default: defaults.tau0,
      min: 0,
      max: 10,
      perReplica: true,
      log: true,
      doc: "first-layer initialisation std: W0, V0 ~ N(0, τ0²)",
      source:
        `Assumption 3.2 (τ0 = 1/poly(d/ε), τ0·log d ≤ min(q·ε1, ε1²)); default ${defaults.tau0} chosen so that τ0·log d ≤ ε1² at d = 64, ε1 = 0.05: the noise part's output (Prop. A.4, ≲ τ0·log d) is then ≈ 0.002 (${defaults.sweepSource})`,
    },
    n_test: {
      kind: "int",
      default: defaults.nTest,
      min: 1,
      max: 1 << 20,
      doc:
        "fresh test examples per sampled subset (P-only and both); Q-only test metrics are exact",
    },
    seed: {
      kind: "int",
      default: defaults.seed,
      min: 0,
      max: 0xFFFFFFFE,
      doc: "data seed (also keys each replica's initialisation and noise with the replica index)",
    },
    blocks: {
      kind: "enum",
      values: ["both", "p", "q", "q-plane", "q-rays"],
      default: "both",
      doc: "which block learns: the other block's inputs are set to 0 (same draws, same seeds)",
      valueDocs: {
        both: "the papers' network: P and Q blocks together",
        p: "P block alone: x2 = 0 everywhere, V feels only decay and noise",
        q: "Q block alone: x1 = 0 everywhere, W feels only decay and noise",
        "q-plane":
          "Q block alone in its 2-D plane: as q, but W and V's d − 2 columns off the plane (which never meet the data) are not simulated, so a step costs O(N·m_q) with no factor d; the Q metrics equal q's bit for bit; w_norm, w_along_wstar, w_across_wstar, p_alignment and v_norm are NaN",
        "q-rays":
          "as q-plane, with the examples grouped by their ray (x2 = α·u, u ∈ {z, z+ζ, z−ζ}, α ≥ 0; g(αu) = α·g(u)): the Q block runs on the 3 rays only, so a full-batch step costs O(N + m_q); same draws as q-plane, equal to it up to rounding (not bit for bit); CPU backends only; with small-preact-noise's Ξ on, a sweep along each ray's examples sorted by α, O(N + m_q log m_q)",
      },
      source:
        "issue 14 (the race of each block trained alone; the Q block alone in its 2-D plane, notes §7 'V lives in two dimensions'); p and q cost O(N·m·d) per step for large-lr's noise and decay on both blocks, q-plane none of it; q-rays also drops the factor m_q from the per-example work (positive homogeneity, seed-001 §2.1)",
    },
    data: {
      kind: "enum",
      values: ["shared", "per-replica"],
      default: "per-replica",
      doc: "all replicas train on the seed's data, or replica k on data seed seed+k",
      valueDocs: {
        shared: "one data set (and test set) for every replica",
        "per-replica": "replica k uses data seed seed+k: replicas are independent seeds",
      },
    },
  };
}

/** Sizes and constants derived from the parameters (float64; r and γ0 rounded where used). */
export interface PQShape {
  d: number;
  n: number;
  nTest: number;
  /** Hidden units in all: halfP + halfQ (the paper's m when the blocks are equal). */
  m: number;
  /**
   * Rows of each block when both are equal (NaN otherwise): only the WebGPU kernel uses it,
   * and it refuses unequal widths (server/engine/webgpu/pq_widths.ts).
   */
  half: number;
  /** m_p/2: rows of the W (P) block; its second layer is ±1/√m_p. */
  halfP: number;
  /** m_q/2: rows of the V (Q) block; its second layer is ±1/√m_q. */
  halfQ: number;
  p0: number;
  q0: number;
  gamma0: number;
  r: number;
  /** Which block's inputs are kept ("both", "p", "q"). */
  blocks: string;
}

export function pqShape(params: RunSpec["params"]): PQShape {
  const d = params.d as number;
  const kappaSq = params.kappa_sq as number;
  const p0 = (params.p0_scale as number) * kappaSq / 2;
  const q0 = params.q0 as number;
  const m = params.m as number;
  // 0 (or absent, in specs written before the option) means the paper's single width m.
  const widthOf = (name: string) => ((params[name] as number | undefined) || m);
  const mP = widthOf("m_p"), mQ = widthOf("m_q");
  const errors = [];
  if (p0 + q0 > 1) {
    errors.push({
      field: "params.q0",
      message: `p0 + q0 must be ≤ 1, got p0 = ${p0} (p0_scale·κ²/2) and q0 = ${q0}`,
    });
  }
  if (m % 2 !== 0) {
    errors.push({ field: "params.m", message: `must be even (m/2 units per block), got ${m}` });
  }
  for (const [name, w] of [["m_p", mP], ["m_q", mQ]] as const) {
    if (params[name] && w % 2 !== 0) {
      errors.push({
        field: `params.${name}`,
        message: `must be 0 (= m) or even (${name}/2 units in its block), got ${w}`,
      });
    }
  }
  const n = Math.max(1, Math.round(d / kappaSq));
  if (n > 1 << 20) {
    errors.push({ field: "params.kappa_sq", message: `N = d/κ² = ${n} exceeds 2^20 examples` });
  }
  if (errors.length) throw new SpecError(errors);
  return {
    d,
    n,
    nTest: params.n_test as number,
    m: mP / 2 + mQ / 2,
    half: mP === mQ ? mP / 2 : NaN,
    halfP: mP / 2,
    halfQ: mQ / 2,
    p0,
    q0,
    gamma0: (params.gamma_scale as number) / Math.sqrt(d),
    r: (params.r_scale as number) * Math.pow(d, -0.75),
    blocks: (params.blocks as string | undefined) ?? "both",
  };
}

// ---------------------------------------------------------------------------------------
// Data.

/** One data seed's training and test sets, float32-exact, as every backend consumes them. */
export interface PQDataSet {
  /** Labels ±1, [n]. */
  y: Float32Array;
  /** SUBSET_* per example, [n]. */
  subset: Int32Array;
  /** [n × d], zero rows for Q-only examples; empty when x1 is zero (x1IsZero). */
  x1: Float32Array;
  /** [n × 2]: coordinates of x2 along z and along ζ/r; zero for P-only examples. */
  x2: Float32Array;
  testY: Float32Array;
  testSubset: Int32Array;
  testX1: Float32Array;
  testX2: Float32Array;
  /** Examples per subset in the training set. */
  counts: [number, number, number];
}

function fillExample(
  shape: PQShape,
  dataSeed: number,
  index: number,
  metaStream: number,
  x1Stream: number,
  forcedSubset: number | null,
  x1: Float32Array,
  x2: Float32Array,
  row: Float64Array,
): { y: number; subset: number } {
  const { d, gamma0, r } = shape;
  const w = philoxBlock(dataSeed, DATA_REPLICA, index, metaStream, 0);
  const y = rademacher(w[0]);
  let subset = forcedSubset;
  if (subset === null) {
    const u = uniform24(w[1]);
    subset = u < shape.p0 ? SUBSET_P_ONLY : u < shape.p0 + shape.q0 ? SUBSET_Q_ONLY : SUBSET_BOTH;
  }
  const alpha = uniform24(w[2]);
  const b = rademacher(w[3]);
  const o1 = index * d, o2 = index * 2;
  // With x1 zeroed (the Q block alone) the arrays are empty: nothing reads them (x1IsZero).
  if (subset !== SUBSET_Q_ONLY && x1.length > 0) {
    normals(dataSeed, DATA_REPLICA, index, x1Stream, d, row);
    const scale = 1 / Math.sqrt(d);
    // Reflection sampler: y⟨w*, x1⟩ = γ0 + |g0| with g0 ~ N(0, 1/d); the rest untouched.
    x1[o1] = y * (gamma0 + Math.abs(row[0]) * scale);
    for (let k = 1; k < d; k++) x1[o1 + k] = row[k] * scale;
  }
  if (subset !== SUBSET_P_ONLY) {
    x2[o2] = alpha;
    x2[o2 + 1] = y > 0 ? 0 : alpha * b * r;
  }
  return { y, subset };
}

/** The training and test sets of one data seed (see the header for the exact protocol). */
export function generatePQData(shape: PQShape, dataSeed: number): PQDataSet {
  const { d, n, nTest } = shape;
  const row = new Float64Array(d);
  const y = new Float32Array(n), subset = new Int32Array(n);
  // The Q block alone never reads x1 (all zero): no storage, and no x1 draws, which no other
  // draw depends on (counter-based streams), so y, subsets and x2 are those of `both`.
  const x1Len = x1IsZero(shape) ? 0 : d;
  const x1 = new Float32Array(n * x1Len), x2 = new Float32Array(n * 2);
  const counts: [number, number, number] = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    const e = fillExample(shape, dataSeed, i, DATA_TRAIN_META, DATA_TRAIN_X1, null, x1, x2, row);
    y[i] = e.y;
    subset[i] = e.subset;
    counts[e.subset]++;
  }
  const nt = 2 * nTest;
  const testY = new Float32Array(nt), testSubset = new Int32Array(nt);
  const testX1 = new Float32Array(nt * x1Len), testX2 = new Float32Array(nt * 2);
  for (let k = 0; k < nt; k++) {
    const forced = k < nTest ? SUBSET_P_ONLY : SUBSET_BOTH;
    const e = fillExample(
      shape,
      dataSeed,
      k,
      DATA_TEST_META,
      DATA_TEST_X1,
      forced,
      testX1,
      testX2,
      row,
    );
    testY[k] = e.y;
    testSubset[k] = e.subset;
  }
  // Block-alone runs keep every draw and zero the other block's inputs afterwards, so that
  // they pair with the runs of both blocks on the same seeds.
  if (shape.blocks === "p") x2.fill(0), testX2.fill(0);
  // (x1 of the Q block alone is empty: see x1Len.)
  return { y, subset, x1, x2, testY, testSubset, testX1, testX2, counts };
}

/** All data sets of a run concatenated (one per replica, or one shared), as kernels take them. */
export interface PQData {
  sets: number;
  perReplica: boolean;
  y: Float32Array;
  subset: Int32Array;
  x1: Float32Array;
  x2: Float32Array;
  testY: Float32Array;
  testSubset: Int32Array;
  testX1: Float32Array;
  testX2: Float32Array;
  /** [sets × 3] training examples per subset. */
  counts: Int32Array;
  /** Float32-rounded r: the ζ coordinate of z ± ζ used by the exact Q metrics. */
  rF32: number;
  /**
   * blocks = q-rays: the ray of each training (test) example's x2, RAY_Z, RAY_PLUS,
   * RAY_MINUS or RAY_NONE ([sets × n], [sets × 2·n_test]); absent otherwise.
   */
  ray?: Uint8Array;
  testRay?: Uint8Array;
  /**
   * blocks = q-rays: each set's training examples on the rays z, z + ζ, z − ζ in that order,
   * each ray's sorted by α ascending (indices within the set), [sets × n] with RAY_NONE
   * examples left out; rayStart [sets × 4]: where each ray's run starts, and its end.
   */
  rayOrder?: Int32Array;
  rayStart?: Int32Array;
}

/** The data set replica k trains on: its own, or the one all replicas share. */
export function dataSetOf(data: PQData, replica: number): number {
  return data.perReplica ? replica : 0;
}

/**
 * The data sets of a run: set s from data seed seed + s, or seed + dataOf(s) when some sets
 * repeat others (large-lr's noise pairs).
 */
export function generateRunData(
  shape: PQShape,
  seed: number,
  sets: number,
  dataOf: (s: number) => number = (s) => s,
): PQData {
  const { n, nTest } = shape;
  const d = x1IsZero(shape) ? 0 : shape.d; // x1's row length as stored
  const nt = 2 * nTest;
  const out: PQData = {
    sets,
    perReplica: sets > 1,
    y: new Float32Array(sets * n),
    subset: new Int32Array(sets * n),
    x1: new Float32Array(sets * n * d),
    x2: new Float32Array(sets * n * 2),
    testY: new Float32Array(sets * nt),
    testSubset: new Int32Array(sets * nt),
    testX1: new Float32Array(sets * nt * d),
    testX2: new Float32Array(sets * nt * 2),
    counts: new Int32Array(sets * 3),
    rF32: Math.fround(shape.r),
  };
  for (let s = 0; s < sets; s++) {
    const set = generatePQData(shape, (seed + dataOf(s)) >>> 0);
    out.y.set(set.y, s * n);
    out.subset.set(set.subset, s * n);
    out.x1.set(set.x1, s * n * d);
    out.x2.set(set.x2, s * n * 2);
    out.testY.set(set.testY, s * nt);
    out.testSubset.set(set.testSubset, s * nt);
    out.testX1.set(set.testX1, s * nt * d);
    out.testX2.set(set.testX2, s * nt * 2);
    out.counts.set(set.counts, s * 3);
  }
  if (shape.blocks === "q-rays") {
    out.ray = raysOf(out.x2, out.subset);
    out.testRay = raysOf(out.testX2, out.testSubset);
    out.rayOrder = new Int32Array(sets * n);
    out.rayStart = new Int32Array(sets * 4);
    for (let s = 0; s < sets; s++) {
      let at = 0;
      for (let k = 0; k < 3; k++) {
        out.rayStart[s * 4 + k] = at;
        const on: number[] = [];
        for (let i = 0; i < n; i++) if (out.ray[s * n + i] === k) on.push(i);
        on.sort((i, j) => out.x2[2 * (s * n + i)] - out.x2[2 * (s * n + j)] || i - j);
        out.rayOrder.set(on, s * n + at);
        at += on.length;
      }
      out.rayStart[s * 4 + 3] = at;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// blocks = q-rays: the Q block on its three rays.
//
// Every Q input is x2 = α·u with α ~ U[0, 1] and u one of z, z + ζ, z − ζ (seed-001 §2.1), and
// the ReLU block is positively homogeneous: g(αu) = α·g(u), and the pre-activation V_j·(αu) =
// α·V_j·u has the sign of V_j·u. So a pass over the data needs the block on the three rays
// (O(m_q)) and a scalar per example (O(N)): f_i = α_i g(u_k), and the gradient of Σ_i c_i f_i
// is Σ_k (Σ_{i on ray k} c_i α_i)·∇g(u_k). The ray of an example is read from its stored x2 =
// (α, float32(α·b·r)) by the sign of the ζ coordinate; its ray is (1, ±float32(r)), so α·u
// differs from the stored x2 by float32 rounding in the ζ coordinate (≤ 1 ulp): q-rays agrees
// with q-plane to rounding, not bit for bit. α = 0 (x2 = 0) and P-only examples are RAY_NONE:
// f = 0, no gradient, every V unit counted active (1(0 ≥ 0)) where the example carries Q.

export const RAY_Z = 0;
export const RAY_PLUS = 1;
export const RAY_MINUS = 2;
export const RAY_NONE = 3;
/** The ζ coordinate of each ray, in units of float32(r). */
const RAY_SIGN = [0, 1, -1] as const;

/** The ray of every example from its x2 coordinates [·× 2] and subsets. */
function raysOf(x2: Float32Array, subset: Int32Array): Uint8Array {
  const ray = new Uint8Array(subset.length);
  for (let i = 0; i < subset.length; i++) {
    const c0 = x2[2 * i], c1 = x2[2 * i + 1];
    ray[i] = subset[i] === SUBSET_P_ONLY || c0 === 0
      ? RAY_NONE
      : c1 > 0
      ? RAY_PLUS
      : c1 < 0
      ? RAY_MINUS
      : RAY_Z;
  }
  return ray;
}

/** Whether the run uses the ray grouping (blocks = q-rays). */
export function usesRays(shape: PQShape): boolean {
  return shape.blocks === "q-rays";
}

/** Whether only V's two plane columns are simulated (blocks = q-plane or q-rays). */
export function isPlane(shape: PQShape): boolean {
  return shape.blocks === "q-plane" || shape.blocks === "q-rays";
}

/**
 * The Q block on the three rays: h[k·halfQ + j] = V_j·u_k (u_k = (1, RAY_SIGN[k]·r) in the
 * plane); returns [g(z), g(z + ζ), g(z − ζ)].
 */
export function rayOutputs(net: PQNet, rF32: number, h: Float64Array): number[] {
  const { halfQ, d, V, b } = net;
  const g = [0, 0, 0];
  for (let k = 0; k < 3; k++) {
    const c1 = RAY_SIGN[k] * rF32;
    for (let j = 0; j < halfQ; j++) {
      const hv = V[j * d] + V[j * d + 1] * c1;
      h[k * halfQ + j] = hv;
      if (hv > 0) g[k] += b[j] * hv;
    }
  }
  return g;
}

/**
 * L̂ on the training set by rays in O(N + m_q); with gV, also its gradient on V's columns 0,
 * 1 (overwritten), as fullBatchGradient gives it without pre-activation noise.
 */
export function raysLossAndGradient(
  net: PQNet,
  data: PQData,
  shape: PQShape,
  set: number,
  gV: Float64Array | null,
): number {
  const { n } = shape;
  const { halfQ, d, b } = net;
  const h = new Float64Array(3 * halfQ);
  const g = rayOutputs(net, data.rF32, h);
  const ray = data.ray!;
  const coef = [0, 0, 0];
  const lossAtZero = logistic(0);
  let loss = 0;
  for (let i = set * n; i < set * n + n; i++) {
    const k = ray[i];
    if (k === RAY_NONE) {
      loss += lossAtZero;
      continue;
    }
    const y = data.y[i], alpha = data.x2[2 * i];
    const z = y * (alpha * g[k]);
    loss += logistic(z);
    if (gV) coef[k] += logisticDeriv(z) * y * alpha / n;
  }
  if (gV) {
    for (let j = 0; j < halfQ; j++) {
      let g0 = 0, g1 = 0;
      for (let k = 0; k < 3; k++) {
        if (h[k * halfQ + j] < 0) continue;
        const s = coef[k] * b[j];
        g0 += s;
        g1 += s * RAY_SIGN[k] * data.rF32;
      }
      gV[j * d] = g0;
      gV[j * d + 1] = g1;
    }
  }
  return loss / n;
}

/**
 * raysLossAndGradient with App. F.1's pre-activation noise Ξ (one draw per step, shared by all
 * examples), which breaks g(αu) = α·g(u): unit j on ray k is active for the α with α·s_j + ξ_j
 * ≥ 0 (s_j = V_j·u_k), an interval ending or starting at t_j = −ξ_j/s_j. With each ray's
 * examples sorted by α (data.rayOrder) one sweep over the sorted breakpoints gives every f_i =
 * c_W + α_i·A + B (A, B: the active units' Σ b_j s_j and Σ b_j ξ_j; c_W = Σ a_j ReLU(ξ^W_j), as
 * x1 = 0) and, through prefix sums of ℓ'_i y_i α_i, each unit's gradient: O(N + m_q log m_q)
 * per step. P-only and α = 0 examples see c_W + Σ b_j ReLU(ξ_j) and give no gradient.
 */
export function raysPreactLossAndGradient(
  net: PQNet,
  data: PQData,
  shape: PQShape,
  set: number,
  preact: Float64Array,
  gV: Float64Array,
): number {
  const { n } = shape;
  const { halfP, halfQ, d, a, b } = net;
  const h = new Float64Array(3 * halfQ);
  rayOutputs(net, data.rF32, h);
  let cW = 0, cNone = 0;
  for (let j = 0; j < halfP; j++) if (preact[j] > 0) cW += a[j] * preact[j];
  for (let j = 0; j < halfQ; j++) if (preact[halfP + j] > 0) cNone += b[j] * preact[halfP + j];
  cNone += cW;
  let loss = 0;
  const ray = data.ray!;
  for (let i = set * n; i < set * n + n; i++) {
    if (ray[i] === RAY_NONE) loss += logistic(data.y[i] * cNone);
  }
  for (let j = 0; j < halfQ; j++) gV[j * d] = gV[j * d + 1] = 0;
  const order = data.rayOrder!, start = data.rayStart!;
  const prefix = new Float64Array(n + 1), pos = new Int32Array(halfQ);
  const units = Array.from({ length: halfQ }, (_, j) => j);
  for (let k = 0; k < 3; k++) {
    const from = start[set * 4 + k], count = start[set * 4 + k + 1] - from;
    const s = (j: number) => h[k * halfQ + j];
    const t = (j: number) => -preact[halfP + j] / s(j);
    // Units with s ≠ 0 toggle once, at t_j: on (s > 0, from α ≥ t) before off (s < 0, after).
    const events = units.filter((j) => s(j) !== 0).sort((i, j) =>
      t(i) < t(j) ? -1 : t(i) > t(j) ? 1 : (s(j) > 0 ? 1 : 0) - (s(i) > 0 ? 1 : 0)
    );
    let A = 0, B = 0;
    for (let j = 0; j < halfQ; j++) {
      const xi = preact[halfP + j];
      if (s(j) < 0 || (s(j) === 0 && xi >= 0)) A += b[j] * s(j), B += b[j] * xi;
      pos[j] = count;
    }
    let e = 0;
    for (let m = 0; m < count; m++) {
      const i = set * n + order[set * n + from + m];
      const alpha = data.x2[2 * i];
      for (; e < events.length; e++) {
        const j = events[e];
        if (s(j) > 0 ? t(j) > alpha : t(j) >= alpha) break;
        const sign = s(j) > 0 ? 1 : -1;
        A += sign * b[j] * s(j);
        B += sign * b[j] * preact[halfP + j];
        pos[j] = m;
      }
      const y = data.y[i];
      const z = y * (cW + alpha * A + B);
      loss += logistic(z);
      prefix[m + 1] = prefix[m] + logisticDeriv(z) * y * alpha / n;
    }
    for (let j = 0; j < halfQ; j++) {
      const total = prefix[count];
      const active = s(j) > 0
        ? total - prefix[pos[j]]
        : s(j) < 0
        ? prefix[pos[j]]
        : preact[halfP + j] >= 0
        ? total
        : 0;
      gV[j * d] += b[j] * active;
      gV[j * d + 1] += b[j] * active * RAY_SIGN[k] * data.rF32;
    }
  }
  return loss / n;
}

/** Empirical Q-only fraction q = |M̄1|/N of a data set (used by the loss-threshold anneal). */
export function qFraction(data: PQData, shape: PQShape, set: number): number {
  return data.counts[set * 3 + SUBSET_Q_ONLY] / shape.n;
}

// ---------------------------------------------------------------------------------------
// Network.

/** One replica's network: first layers in float64, fixed second layer. */
export interface PQNet {
  /** Rows of W (m_p/2) and of V (m_q/2). */
  halfP: number;
  halfQ: number;
  d: number;
  /** [halfP × d]. */
  W: Float64Array;
  /** [halfQ × d]; only columns 0 and 1 meet the data. */
  V: Float64Array;
  /** Second layer of the W block, ±1/√m_p. */
  a: Float64Array;
  /** Second layer of the V block, ±1/√m_q. */
  b: Float64Array;
  /**
   * The noise part W̃ of W (seed-001 eq. 3.4, seed-000 App. D.1), [halfP × d], where the
   * backend tracks it (reference, wasm; trackNoisePart): W = W̄ + W̃ with W̄ the accumulated
   * (smoothed-loss) gradient. Absent: the w_signal_* and w_noise_norm metrics are NaN.
   */
  Wn?: Float64Array;
}

/**
 * Starts tracking the noise part of W: W̃_0 = W_0 (the initialisation is noise, eq. 3.4).
 * large-lr: W̃_{t+1} = (1 − γ_tλ)W̃_t − γ_t τ_ξ ξ_t with the update's own ξ_t; label noise:
 * W̃_{t+1} = W̃_t − α_t ε_t y ∇_W f(x_i), ε_t = −δ unflipped, 1 − δ flipped (Γ ≡ −1);
 * full-batch GD without noise: W̃ = W_0.
 */
export function trackNoisePart(net: PQNet): void {
  net.Wn = net.W.slice();
}

/**
 * Second-layer signs of one replica: +1/−1 for units 0..m−1 (the halfP units of W, then the
 * halfQ units of V).
 */
export function secondLayerSigns(seed: number, replica: number, m: number): Int8Array {
  const signs = new Int8Array(m);
  const words = new Uint32Array(4);
  for (let j = 0; j < m; j++) {
    if ((j & 3) === 0) philoxBlock(seed, replica, 0, STREAM_INIT_SIGN, j >>> 2, words);
    signs[j] = rademacher(words[j & 3]);
  }
  return signs;
}

export function initPQNet(shape: PQShape, seed: number, replica: number, tau0: number): PQNet {
  const { halfP, halfQ, d, m } = shape;
  const W = normals(seed, replica, 0, STREAM_INIT_W, halfP * d);
  const V = normals(seed, replica, 0, STREAM_INIT_V, halfQ * d);
  for (let k = 0; k < W.length; k++) W[k] *= tau0;
  for (let k = 0; k < V.length; k++) V[k] *= tau0;
  const signs = secondLayerSigns(seed, replica, m);
  // Per-block scaling 1/√m_block (header): 1/√m for both when the widths are equal.
  const scaleP = 1 / Math.sqrt(2 * halfP), scaleQ = 1 / Math.sqrt(2 * halfQ);
  const a = new Float64Array(halfP), b = new Float64Array(halfQ);
  for (let j = 0; j < halfP; j++) a[j] = signs[j] * scaleP;
  for (let j = 0; j < halfQ; j++) b[j] = signs[halfP + j] * scaleQ;
  return { halfP, halfQ, d, W, V, a, b };
}

/** ℓ(z) = log(1 + e^(−z)), computed without overflow. */
export function logistic(z: number): number {
  return z > 0 ? Math.log1p(Math.exp(-z)) : -z + Math.log1p(Math.exp(z));
}

/** ℓ'(z) = −1/(1 + e^z). */
export function logisticDeriv(z: number): number {
  return z > 0 ? -Math.exp(-z) / (1 + Math.exp(-z)) : -1 / (1 + Math.exp(z));
}

/**
 * ∫₀¹ ℓ(α·s) dα, the logistic loss averaged along a ray through the origin (α ~ U[0, 1]):
 * the exact Q-only test loss of a positively homogeneous network (seed-000 notes §2).
 * For s > 0, ∫₀ˢ log(1 + e^(−u)) du = π²/12 + Li₂(−e^(−s)), and Li₂ on [−1, 0) is evaluated
 * through Li₂(x) = −Li₂(x/(x−1)) − ½ln²(1−x), whose series in x/(x−1) ∈ (0, ½] converges
 * geometrically. s < 0 uses ℓ(−u) = u + ℓ(u); small |s| uses the Taylor series.
 */
export function rayLoss(s: number): number {
  if (s < 0) return -s / 2 + rayLoss(-s);
  if (s < 1e-3) return Math.LN2 - s / 4 + s * s / 24;
  const e = Math.exp(-s);
  const t = e / (1 + e);
  let li = 0, power = t;
  for (let k = 1; k <= 60 && power > 1e-18; k++) {
    li += power / (k * k);
    power *= t;
  }
  const lnOnePlusE = Math.log1p(e);
  const li2 = -li - 0.5 * lnOnePlusE * lnOnePlusE;
  return (Math.PI * Math.PI / 12 + li2) / s;
}

/** Where one example's inputs sit in the data arrays. */
export interface ExampleRef {
  x1: Float32Array;
  x2: Float32Array;
  /** Example index inside x1 (stride d) and x2 (stride 2). */
  index: number;
  hasP: boolean;
  hasQ: boolean;
  /**
   * x1 is zero by construction (blocks = q, q-plane, q-rays): W_j·x1 is +0 and the W gradient adds
   * ±0, so both are skipped, bit for bit the same, and the step costs no factor d.
   */
  x1Zero?: boolean;
}

/** Whether the run's x1 inputs are all zero (the Q block alone). */
export function x1IsZero(shape: PQShape): boolean {
  return shape.blocks === "q" || shape.blocks === "q-plane" || shape.blocks === "q-rays";
}

/**
 * Pre-activations of one example: hW_j = W_j·x1 (+ ξ_j), hV_j = V_j·x2 (+ ξ_{halfP+j});
 * returns f = Σ a_j ReLU(hW_j) + Σ b_j ReLU(hV_j). `preact` (length halfP + halfQ) is the
 * pre-activation noise Ξ of App. F.1, or null.
 */
export function forwardExample(
  net: PQNet,
  ex: ExampleRef,
  hW: Float64Array,
  hV: Float64Array,
  preact: Float64Array | null,
): number {
  const { halfP, halfQ, d, V, b } = net;
  let f = 0;
  const o1 = ex.index * d, o2 = ex.index * 2;
  const x20 = ex.x2[o2], x21 = ex.x2[o2 + 1];
  // Units are summed in the order W_0, V_0, W_1, V_1, … (then the wider block's rest), the
  // order of the equal-width network, so that its numbers stay bit for bit the same.
  const both = Math.min(halfP, halfQ);
  for (let j = 0; j < both; j++) {
    f += forwardW(net, ex, o1, j, hW, preact);
    f += forwardV(V, b, d, ex.hasQ, x20, x21, j, halfP, hV, preact);
  }
  for (let j = both; j < halfP; j++) f += forwardW(net, ex, o1, j, hW, preact);
  for (let j = both; j < halfQ; j++) {
    f += forwardV(V, b, d, ex.hasQ, x20, x21, j, halfP, hV, preact);
  }
  return f;
}

/** Unit j of the W block: stores its pre-activation, returns its contribution to f. */
function forwardW(
  net: PQNet,
  ex: ExampleRef,
  o1: number,
  j: number,
  hW: Float64Array,
  preact: Float64Array | null,
): number {
  const { d, W } = net;
  let h = 0;
  if (ex.hasP && !ex.x1Zero) {
    const row = j * d;
    for (let k = 0; k < d; k++) h += W[row + k] * ex.x1[o1 + k];
  }
  if (preact) h += preact[j];
  hW[j] = h;
  return h > 0 ? net.a[j] * h : 0;
}

/** Unit j of the V block (columns 0, 1 only meet x2). */
function forwardV(
  V: Float64Array,
  b: Float64Array,
  d: number,
  hasQ: boolean,
  x20: number,
  x21: number,
  j: number,
  halfP: number,
  hV: Float64Array,
  preact: Float64Array | null,
): number {
  let hv = hasQ ? V[j * d] * x20 + V[j * d + 1] * x21 : 0;
  if (preact) hv += preact[halfP + j];
  hV[j] = hv;
  return hv > 0 ? b[j] * hv : 0;
}

/**
 * Adds c·∇_{W,V} f(x) to (gW, gV): row j of the W block gets c·a_j·1(hW_j ≥ 0)·x1, row j of
 * the V block c·b_j·1(hV_j ≥ 0)·x2 (columns 0, 1 only). gV has the layout of V.
 */
export function accumulateGradient(
  net: PQNet,
  ex: ExampleRef,
  hW: Float64Array,
  hV: Float64Array,
  c: number,
  gW: Float64Array,
  gV: Float64Array,
): void {
  const { halfP, halfQ, d, a, b } = net;
  const o1 = ex.index * d, o2 = ex.index * 2;
  for (let j = 0; j < halfP && !ex.x1Zero; j++) {
    if (ex.hasP && hW[j] >= 0) {
      const s = c * a[j], row = j * d;
      for (let k = 0; k < d; k++) gW[row + k] += s * ex.x1[o1 + k];
    }
  }
  for (let j = 0; j < halfQ; j++) {
    if (ex.hasQ && hV[j] >= 0) {
      const s = c * b[j];
      gV[j * d] += s * ex.x2[o2];
      gV[j * d + 1] += s * ex.x2[o2 + 1];
    }
  }
}

/** The training set of replica r's data set, addressed example by example. */
export function trainExample(data: PQData, shape: PQShape, set: number, i: number): ExampleRef {
  const index = set * shape.n + i;
  const subset = data.subset[index];
  return {
    x1: data.x1,
    x2: data.x2,
    index,
    hasP: subset !== SUBSET_Q_ONLY,
    hasQ: subset !== SUBSET_P_ONLY,
    x1Zero: x1IsZero(shape),
  };
}

/**
 * Full-batch gradient of L̂(U) = (1/N) Σ ℓ(y_i f(x_i)) into (gW, gV) (overwritten); returns
 * L̂ at the current weights. With `preact`, f uses the noisy pre-activations of App. F.1 for
 * both the loss and the gradient (the noise is shared by all examples of the step).
 */
export function fullBatchGradient(
  net: PQNet,
  data: PQData,
  shape: PQShape,
  set: number,
  preact: Float64Array | null,
  gW: Float64Array,
  gV: Float64Array,
): number {
  // Pre-activation noise breaks positive homogeneity: a sweep along each ray instead.
  if (usesRays(shape)) {
    return preact
      ? raysPreactLossAndGradient(net, data, shape, set, preact, gV)
      : raysLossAndGradient(net, data, shape, set, gV);
  }
  // With x1 = 0 nothing writes gW (it stays zero); only V's columns 0, 1 are ever written.
  if (!x1IsZero(shape)) gW.fill(0);
  for (let j = 0; j < net.halfQ; j++) gV[j * net.d] = gV[j * net.d + 1] = 0;
  const hW = new Float64Array(net.halfP), hV = new Float64Array(net.halfQ);
  const n = shape.n;
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const ex = trainExample(data, shape, set, i);
    const y = data.y[ex.index];
    const f = forwardExample(net, ex, hW, hV, preact);
    loss += logistic(y * f);
    accumulateGradient(net, ex, hW, hV, logisticDeriv(y * f) * y / n, gW, gV);
  }
  return loss / n;
}

/** Clean training loss L̂(U) (no pre-activation noise), for the loss-threshold anneal. */
export function trainLoss(net: PQNet, data: PQData, shape: PQShape, set: number): number {
  if (usesRays(shape)) return raysLossAndGradient(net, data, shape, set, null);
  const hW = new Float64Array(net.halfP), hV = new Float64Array(net.halfQ);
  let loss = 0;
  for (let i = 0; i < shape.n; i++) {
    const ex = trainExample(data, shape, set, i);
    loss += logistic(data.y[ex.index] * forwardExample(net, ex, hW, hV, null));
  }
  return loss / shape.n;
}

/** The loss-threshold anneal level q·log 2 + ε1 (Algorithm 1; seed-000 §4). */
export function annealThreshold(data: PQData, shape: PQShape, set: number, eps1: number): number {
  return qFraction(data, shape, set) * Math.LN2 + eps1;
}

// ---------------------------------------------------------------------------------------
// Activation patterns (for the flips-since-anneal metric, seed-001 Lemma B.3).

/**
 * The activation pattern 1(U x ≥ 0) on the training set, one byte per (example, unit):
 * [n × m], units 0..halfP−1 of the W block then the halfQ of the V block. Only pairs whose
 * input block is nonzero count (W units on examples with P, V units on examples with Q); the
 * others are 0.
 */
export function activationPattern(net: PQNet, data: PQData, shape: PQShape, set: number) {
  const { n, halfP, halfQ, m } = shape;
  const pattern = new Uint8Array(n * m);
  if (usesRays(shape)) return rayPattern(net, data, shape, set, pattern);
  const hW = new Float64Array(halfP), hV = new Float64Array(halfQ);
  for (let i = 0; i < n; i++) {
    const ex = trainExample(data, shape, set, i);
    forwardExample(net, ex, hW, hV, null);
    for (let j = 0; j < halfP; j++) pattern[i * m + j] = ex.hasP && hW[j] >= 0 ? 1 : 0;
    for (let j = 0; j < halfQ; j++) pattern[i * m + halfP + j] = ex.hasQ && hV[j] >= 0 ? 1 : 0;
  }
  return pattern;
}

/**
 * activationPattern by rays (blocks = q-rays): every example on ray k gets the row of u_k, so
 * all rows of a ray are equal (what raysFlips relies on). W's units read x1 = 0: 1(0 ≥ 0) on
 * examples with P, as the per-example pass gives.
 */
function rayPattern(
  net: PQNet,
  data: PQData,
  shape: PQShape,
  set: number,
  pattern: Uint8Array,
): Uint8Array {
  const { n, halfP, halfQ, m } = shape;
  const h = new Float64Array(3 * halfQ);
  rayOutputs(net, data.rF32, h);
  for (let i = 0; i < n; i++) {
    const index = set * n + i, k = data.ray![index], sub = data.subset[index];
    const row = i * m;
    if (sub !== SUBSET_Q_ONLY) pattern.fill(1, row, row + halfP);
    if (sub === SUBSET_P_ONLY) continue;
    for (let j = 0; j < halfQ; j++) {
      pattern[row + halfP + j] = k === RAY_NONE || h[k * halfQ + j] >= 0 ? 1 : 0;
    }
  }
  return pattern;
}

/**
 * Activation flips against a pattern taken by rays (rayPattern), in O(N + m_q): one example
 * per ray stands for all of its ray, and RAY_NONE rows and W's units never flip.
 */
function raysFlips(
  data: PQData,
  shape: PQShape,
  set: number,
  h: Float64Array,
  pattern: Uint8Array,
): number {
  const { n, halfP, halfQ, m } = shape;
  let flips = 0;
  for (let k = 0; k < 3; k++) {
    let count = 0, first = -1;
    for (let i = 0; i < n; i++) {
      if (data.ray![set * n + i] !== k) continue;
      if (first < 0) first = i;
      count++;
    }
    if (first < 0) continue;
    let changed = 0;
    for (let j = 0; j < halfQ; j++) {
      if ((h[k * halfQ + j] >= 0 ? 1 : 0) !== pattern[first * m + halfP + j]) changed++;
    }
    flips += count * changed;
  }
  return flips;
}

/** Number of (example, unit) pairs that carry a pattern: halfP·|M1| + halfQ·|M2|. */
export function patternPairs(data: PQData, shape: PQShape, set: number): number {
  const c = (s: number) => data.counts[set * 3 + s];
  return shape.halfP * (c(SUBSET_P_ONLY) + c(SUBSET_BOTH)) +
    shape.halfQ * (c(SUBSET_Q_ONLY) + c(SUBSET_BOTH));
}

// ---------------------------------------------------------------------------------------
// Metrics.

export const PQ_BASE_METRICS = ["train_loss", "train_error", "test_loss", "test_error"] as const;

/** Metric descriptions shared by both experiments (names as issue 6 gives them). */
export function pqMetricSpecs() {
  const subsetDoc = ["P-only", "Q-only", "both"];
  const specs: { name: string; doc: string; scale: "linear" | "log" }[] = [];
  const baseDoc: Record<string, string> = {
    train_loss: "L̂ = (1/N) Σ log(1 + e^(−y f(x))) over the training set",
    train_error: "fraction of training examples with y·f(x) ≤ 0",
    test_loss:
      "p0·L_P-only + q0·L_Q-only + (1−p0−q0)·L_both: fresh test sets for P-only and both, exact Q-only",
    test_error: "p0·E_P-only + q0·E_Q-only + (1−p0−q0)·E_both (0-1 error, y·f ≤ 0 counts as wrong)",
  };
  for (const base of PQ_BASE_METRICS) {
    const scale = base.endsWith("loss") ? "log" : "linear";
    specs.push({ name: base, doc: baseDoc[base], scale });
    SUBSET_SUFFIXES.forEach((suffix, s) => {
      const exact = base.startsWith("test") && s === SUBSET_Q_ONLY;
      specs.push({
        name: base + suffix,
        doc: `${base.replace("_", " ")} on ${subsetDoc[s]} examples${
          exact
            ? ": exact, from g(z), g(z±ζ) by positive homogeneity (½ on z, ¼ on each z±ζ; α ~ U[0,1])"
            : ""
        }`,
        scale,
      });
    });
  }
  specs.push(
    { name: "g_z", doc: "g(z): the Q block's output on z (label +1)", scale: "linear" },
    { name: "g_z_plus", doc: "g(z+ζ) (label −1)", scale: "linear" },
    { name: "g_z_minus", doc: "g(z−ζ) (label −1)", scale: "linear" },
    {
      name: "q_second_diff",
      doc: "g(z+ζ) + g(z−ζ) − 2g(z): zero for any linear g; Q is learned only once it is < 0",
      scale: "linear",
    },
    {
      name: "p_alignment",
      doc: "cos(w*, Σ_j a_j W_j): the direction of the odd part r(x1) − r(−x1) = Σ_j a_j W_j·x1",
      scale: "linear",
    },
    { name: "w_norm", doc: "‖W‖_F (P block, all d columns)", scale: "linear" },
    {
      name: "w_along_wstar",
      doc:
        "‖W w*‖: the part of W along the P signal direction (w_norm² = w_along_wstar² + w_across_wstar²)",
      scale: "linear",
    },
    {
      name: "w_across_wstar",
      doc:
        "‖W (I − w* w*ᵀ)‖_F: the part of W across w* (noise, and what the P-only points' Gaussian parts teach)",
      scale: "linear",
    },
    {
      name: "w_signal_norm",
      doc:
        "‖W̄‖_F, W̄ = W − W̃: the accumulated (smoothed-loss) gradient part of W (eq. 3.4; NaN on WebGPU)",
      scale: "linear",
    },
    {
      name: "w_signal_along_wstar",
      doc: "‖W̄ w*‖: the signal part along the P direction w*",
      scale: "linear",
    },
    {
      name: "w_noise_norm",
      doc:
        "‖W̃‖_F: the noise part, tracked exactly (W̃_0 = W_0; W̃ ← (1−γλ)W̃ − γτ_ξ ξ, or − α ε y ∇_W f for label noise)",
      scale: "linear",
    },
    { name: "v_norm", doc: "‖V‖_F (Q block, all d columns)", scale: "linear" },
    {
      name: "activation_flips",
      doc:
        "fraction of (training example, unit) activations 1(U x ≥ 0) that differ from those at the anneal (0 before it)",
      scale: "linear",
    },
  );
  return specs;
}

/** The Q block's output on a point c0·z + c1·(ζ/r) of the Q plane. */
export function qOutput(net: PQNet, c0: number, c1: number): number {
  let g = 0;
  for (let j = 0; j < net.halfQ; j++) {
    const h = net.V[j * net.d] * c0 + net.V[j * net.d + 1] * c1;
    if (h > 0) g += net.b[j] * h;
  }
  return g;
}

function frobenius(M: Float64Array): number {
  let s = 0;
  for (const v of M) s += v * v;
  return Math.sqrt(s);
}

/** Metrics of the parts that blocks = q-plane and q-rays do not simulate: NaN there. */
export const PLANE_UNTRACKED = [
  "p_alignment",
  "w_norm",
  "w_along_wstar",
  "w_across_wstar",
  "w_signal_norm",
  "w_signal_along_wstar",
  "w_noise_norm",
  "v_norm",
] as const;

/**
 * The update U ← (1 − γλ)U − γ(G + τ_ξ ξ) of the Q plane alone (blocks = q-plane): V's
 * columns 0 and 1 with the very draws the full update gives them (normals j·d and j·d + 1 of
 * STREAM_XI_V), so they match blocks = q bit for bit; W and V's other columns, which never
 * meet the data, are left as they are. O(m_q) per step.
 */
export function planeUpdate(
  net: PQNet,
  gV: Float64Array,
  decay: number,
  gamma: number,
  tauXi: number,
  seed: number,
  replica: number,
  t: number,
): void {
  const { halfQ, d, V } = net;
  const words = new Uint32Array(4);
  for (let j = 0; j < halfQ; j++) {
    for (let k = j * d; k < j * d + 2; k++) {
      const xi = normalAt(seed, replica, t, STREAM_XI_V, k, words);
      V[k] = decay * V[k] - gamma * (gV[k] + tauXi * xi);
    }
  }
}

/** Every shared metric of one replica at its current weights (clean forward passes). */
export function pqMetrics(
  net: PQNet,
  data: PQData,
  shape: PQShape,
  set: number,
  annealPattern: Uint8Array | null,
): Record<string, number> {
  const { n, nTest, halfP, halfQ, m, d } = shape;
  const out: Record<string, number> = {};
  const hW = new Float64Array(halfP), hV = new Float64Array(halfQ);
  // Training set, split by subset; activation flips against the stored pattern.
  const lossSum = [0, 0, 0], errSum = [0, 0, 0], count = [0, 0, 0];
  let flips = 0;
  // blocks = q-rays: f = α·g(u_k) per example from the block on the three rays.
  const rays = usesRays(shape) ? new Float64Array(3 * halfQ) : null;
  const gRay = rays ? rayOutputs(net, data.rF32, rays) : [];
  const rayOut = (ray: Uint8Array, x2: Float32Array, index: number) =>
    ray[index] === RAY_NONE ? 0 : x2[2 * index] * gRay[ray[index]];
  if (rays) {
    for (let i = set * n; i < set * n + n; i++) {
      const s = data.subset[i];
      const z = data.y[i] * rayOut(data.ray!, data.x2, i);
      lossSum[s] += logistic(z);
      errSum[s] += z <= 0 ? 1 : 0;
      count[s]++;
    }
    if (annealPattern) flips = raysFlips(data, shape, set, rays, annealPattern);
  }
  for (let i = 0; i < (rays ? 0 : n); i++) {
    const ex = trainExample(data, shape, set, i);
    const s = data.subset[ex.index], y = data.y[ex.index];
    const z = y * forwardExample(net, ex, hW, hV, null);
    lossSum[s] += logistic(z);
    errSum[s] += z <= 0 ? 1 : 0;
    count[s]++;
    if (annealPattern) {
      const base = i * m;
      for (let j = 0; j < halfP; j++) {
        if (ex.hasP && (hW[j] >= 0 ? 1 : 0) !== annealPattern[base + j]) flips++;
      }
      for (let j = 0; j < halfQ; j++) {
        if (ex.hasQ && (hV[j] >= 0 ? 1 : 0) !== annealPattern[base + halfP + j]) flips++;
      }
    }
  }
  const mean = (x: number, c: number) => (c > 0 ? x / c : NaN);
  out.train_loss = (lossSum[0] + lossSum[1] + lossSum[2]) / n;
  out.train_error = (errSum[0] + errSum[1] + errSum[2]) / n;
  SUBSET_SUFFIXES.forEach((suffix, s) => {
    out["train_loss" + suffix] = mean(lossSum[s], count[s]);
    out["train_error" + suffix] = mean(errSum[s], count[s]);
  });
  // Sampled test subsets: P-only (first n_test) and both (next n_test).
  const nt = 2 * nTest;
  const testLoss = [0, 0, 0], testErr = [0, 0, 0];
  for (let k = 0; k < nt; k++) {
    const index = set * nt + k;
    const s = data.testSubset[index];
    if (rays) {
      const z = data.testY[index] * rayOut(data.testRay!, data.testX2, index);
      testLoss[s] += logistic(z);
      testErr[s] += z <= 0 ? 1 : 0;
      continue;
    }
    const ex: ExampleRef = {
      x1: data.testX1,
      x2: data.testX2,
      index,
      hasP: true,
      hasQ: s === SUBSET_BOTH,
      x1Zero: x1IsZero(shape),
    };
    const z = data.testY[index] * forwardExample(net, ex, hW, hV, null);
    testLoss[s] += logistic(z);
    testErr[s] += z <= 0 ? 1 : 0;
  }
  testLoss[SUBSET_P_ONLY] /= nTest, testErr[SUBSET_P_ONLY] /= nTest;
  testLoss[SUBSET_BOTH] /= nTest, testErr[SUBSET_BOTH] /= nTest;
  // Q-only test set, exactly: positives on the ray of z, negatives on the rays of z ± ζ.
  const rz = data.rF32;
  const gz = qOutput(net, 1, 0), gPlus = qOutput(net, 1, rz), gMinus = qOutput(net, 1, -rz);
  testLoss[SUBSET_Q_ONLY] = 0.5 * rayLoss(gz) + 0.25 * rayLoss(-gPlus) + 0.25 * rayLoss(-gMinus);
  testErr[SUBSET_Q_ONLY] = 0.5 * (gz <= 0 ? 1 : 0) + 0.25 * (gPlus >= 0 ? 1 : 0) +
    0.25 * (gMinus >= 0 ? 1 : 0);
  const weights = [shape.p0, shape.q0, 1 - shape.p0 - shape.q0];
  out.test_loss = 0;
  out.test_error = 0;
  SUBSET_SUFFIXES.forEach((suffix, s) => {
    out["test_loss" + suffix] = testLoss[s];
    out["test_error" + suffix] = testErr[s];
    out.test_loss += weights[s] * testLoss[s];
    out.test_error += weights[s] * testErr[s];
  });
  out.g_z = gz;
  out.g_z_plus = gPlus;
  out.g_z_minus = gMinus;
  out.q_second_diff = gPlus + gMinus - 2 * gz;
  if (isPlane(shape)) {
    // W and V's off-plane columns are not simulated on this path (the header of `blocks`).
    for (const name of PLANE_UNTRACKED) out[name] = NaN;
    out.activation_flips = annealPattern ? flips / patternPairs(data, shape, set) : 0;
    return out;
  }
  // Odd part of the P block: Σ_j a_j W_j; w* = e1.
  const odd = new Float64Array(d);
  for (let j = 0; j < halfP; j++) {
    for (let k = 0; k < d; k++) odd[k] += net.a[j] * net.W[j * d + k];
  }
  const oddNorm = frobenius(odd);
  out.p_alignment = oddNorm > 0 ? odd[0] / oddNorm : 0;
  out.w_norm = frobenius(net.W);
  let along = 0;
  for (let j = 0; j < halfP; j++) along += net.W[j * d] * net.W[j * d];
  out.w_along_wstar = Math.sqrt(along);
  out.w_across_wstar = Math.sqrt(Math.max(0, out.w_norm * out.w_norm - along));
  // The signal/noise split of W (eq. 3.4): W̄ = W − W̃ and the tracked noise part W̃.
  let signal = 0, signalAlong = 0, noise = 0;
  if (net.Wn) {
    for (let k = 0; k < net.W.length; k++) {
      const sk = net.W[k] - net.Wn[k];
      signal += sk * sk;
      noise += net.Wn[k] * net.Wn[k];
      if (k % d === 0) signalAlong += sk * sk;
    }
  }
  out.w_signal_norm = net.Wn ? Math.sqrt(signal) : NaN;
  out.w_signal_along_wstar = net.Wn ? Math.sqrt(signalAlong) : NaN;
  out.w_noise_norm = net.Wn ? Math.sqrt(noise) : NaN;
  out.v_norm = frobenius(net.V);
  out.activation_flips = annealPattern ? flips / patternPairs(data, shape, set) : 0;
  return out;
}

/** What the reference sessions keep of a replica that its snapshot reports. */
export interface PQReplicaView extends PhaseState {
  net: PQNet;
  /** The stored activation pattern, once taken. */
  pattern: Uint8Array | null;
  lr: number;
}

/** A reference replica's snapshot: the P/Q metrics on its data set, its lr and anneal step. */
export function pqReplicaMetrics(
  prep: { data: PQData; shape: PQShape },
  state: PQReplicaView,
  replica: number,
): Record<string, number> {
  const out = pqMetrics(
    state.net,
    prep.data,
    prep.shape,
    dataSetOf(prep.data, replica),
    state.pattern,
  );
  out.lr = state.lr;
  out.anneal_step = state.annealedAt;
  phaseMetrics(out, state);
  return out;
}

/**
 * Memory a P/Q run needs, for the run manager's admission check: the data sets, `weightCopies`
 * float32 copies of a replica's [m_p/2 × d] and [m_q/2 × d] blocks plus its second layer, the stored activation
 * pattern (a byte per training pair), and the snapshot history of `metricCount` metrics.
 */
export function pqEstimateBytes(spec: RunSpec, weightCopies: number, metricCount: number): number {
  const shape = pqShape(spec.params);
  const R = spec.replicas;
  const sets = spec.params.data === "per-replica" ? R : 1;
  const { n, nTest, d, m } = shape;
  // Floats per example: x1 (none for the Q block alone, generatePQData), x2, y, subset; q-rays
  // adds its ray byte and its place in rayOrder.
  const row = x1IsZero(shape) ? (usesRays(shape) ? 6 : 4) : d + 4;
  const dataBytes = 4 * sets * ((n + 2 * nTest) * row);
  const replicaBytes = 4 * R * (weightCopies * m / 2 * d + m) + R * n * m;
  const snapshots = Math.min(Math.ceil(spec.steps / spec.every) + 1, 4096);
  return dataBytes + replicaBytes + 4 * R * metricCount * snapshots;
}
