/**
 * The float64 reference of `linear-label-noise`: every update is one equation of the paper
 * (numbers refer to the seed's equations; notes §4), every metric one formula (notes §5, §7).
 * It is the oracle the Wasm and WebGPU kernels are tested against.
 *
 * State of one replica: W (m×d, row i is neuron w_i), a (m), and for the exact balance
 * identity (notes §6 P1) the per-neuron accumulator S_i = Σ_t (‖Δw_i(t)‖² − Δa_i(t)²) next to
 * the constant c_i = ‖w_i(0)‖² − a_i(0)², so that
 *   balance residual_i = ‖w_i(T)‖² − a_i(T)² − c_i − S_i
 * is zero up to rounding for every update of the bilinear-gradient form (SGD, GD), whatever
 * the noise: 2<w_i, Δw_i> = 2 a_i Δa_i = −2η r a_i <w_i, x> makes the cross terms cancel.
 */
import type { KernelSession, RunSpec, SessionState } from "./types.ts";
import { steppedReferenceSession } from "../engine/reference.ts";
import { stateArray } from "../engine/session_state.ts";
import { boxMuller, DATA_REPLICA, philoxBlock, rademacher, uniformIndex } from "../rng/philox.ts";
import {
  dataSeedOf,
  type LinearPrepared,
  NEURON_FRAME,
  noiseOn,
  onlineSample,
  stepKind,
  STREAM_CHAIN,
  STREAM_INDEX,
  STREAM_NOISE,
} from "./linear_label_noise_setup.ts";
import { wrapLinearSession } from "./linear_label_noise_session.ts";

export interface LinearState {
  W: Float64Array;
  a: Float64Array;
  /** S_i = Σ_t (‖Δw_i‖² − Δa_i²). */
  S: Float64Array;
  /** c_i = ‖w_i(0)‖² − a_i(0)². */
  c0: Float64Array;
  /** Σ of W(t+1) and a(t+1) entries, written by each step: non-finite iff the state is. */
  checksum: Float64Array;
}

export function initialState(prep: LinearPrepared, replica: number): LinearState {
  const { m, d } = prep;
  const w0Off = prep.initPerReplica ? replica * m * d : 0;
  const W = Float64Array.from(prep.W0.subarray(w0Off, w0Off + m * d));
  const a = Float64Array.from(prep.A0.subarray(replica * m, (replica + 1) * m));
  const c0 = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += W[i * d + k] ** 2;
    c0[i] = s - a[i] * a[i];
  }
  return { W, a, S: new Float64Array(m), c0, checksum: new Float64Array(1) };
}

/** Offsets of replica r's data set inside the prepared arrays. */
export function dataOffsets(prep: LinearPrepared, replica: number) {
  const set = prep.dataPerReplica ? replica : 0;
  return {
    x: set * prep.n * prep.d,
    y: set * prep.n,
    xTest: set * prep.nTest * prep.d,
    yTest: set * prep.nTest,
    theta: set * prep.d,
  };
}

/** θ = aᵀW = Σ_i a_i w_iᵀ, the end-to-end predictor. */
export function endToEnd(st: LinearState, m: number, d: number): Float64Array {
  const theta = new Float64Array(d);
  for (let i = 0; i < m; i++) {
    for (let k = 0; k < d; k++) theta[k] += st.a[i] * st.W[i * d + k];
  }
  return theta;
}

/** The training sample of step t and its clean label: (x_ξt, y_ξt) or the online (x_t, θ*ᵀx_t). */
export function sampleOf(prep: LinearPrepared, replica: number, step: number, x: Float64Array) {
  const { d } = prep;
  const off = dataOffsets(prep, replica);
  const dataSeed = dataSeedOf(prep.seed, prep.firstReplica + replica, prep.dataPerReplica);
  if (prep.online) {
    onlineSample(dataSeed, step, d, x);
    let y = 0;
    for (let k = 0; k < d; k++) y += prep.thetaStar[off.theta + k] * x[k];
    return y;
  }
  const xi = uniformIndex(philoxBlock(dataSeed, DATA_REPLICA, step, STREAM_INDEX, 0)[0], prep.n);
  for (let k = 0; k < d; k++) x[k] = prep.X[off.x + xi * d + k];
  return prep.y[off.y + xi];
}

/** Label noise ε_t of one replica: ±σ (paper) or σ·N(0, 1). */
export function labelNoise(prep: LinearPrepared, replica: number, step: number): number {
  const sigma = prep.sigma[replica];
  if (sigma === 0 || !noiseOn(prep, step)) return 0;
  const w = philoxBlock(prep.seed, prep.firstReplica + replica, step, STREAM_NOISE, 0);
  return sigma * (prep.gaussianNoise ? boxMuller(w[0], w[1])[0] : rademacher(w[0]));
}

/**
 * Eqs. 13–16 (and 33–34 per neuron), simultaneous in W and a:
 *   r = aᵀW x − y − ε,  W ← W − η r a xᵀ,  a ← a − η r W x.
 * Balance: ‖Δw_i‖² − Δa_i² = η² r² (a_i² ‖x‖² − (w_iᵀx)²), the paper's η²ΔW_i(t).
 */
export function sgdStep(
  prep: LinearPrepared,
  st: LinearState,
  replica: number,
  step: number,
  scratch: { x: Float64Array; h: Float64Array },
): void {
  const { m, d } = prep;
  const lr = prep.lr[replica];
  const { x, h } = scratch;
  const y = sampleOf(prep, replica, step, x);
  const eps = labelNoise(prep, replica, step);
  let f = 0, xx = 0;
  for (let k = 0; k < d; k++) xx += x[k] * x[k];
  for (let i = 0; i < m; i++) {
    let hi = 0; // h_i = w_i(t)ᵀx
    for (let k = 0; k < d; k++) hi += st.W[i * d + k] * x[k];
    h[i] = hi;
    f += st.a[i] * hi;
  }
  const r = f - y - eps;
  const lrr = lr * r;
  let checksum = 0;
  for (let i = 0; i < m; i++) {
    const ai = st.a[i]; // a_i(t): the W update must use the old value
    const cw = lrr * ai;
    for (let k = 0; k < d; k++) {
      st.W[i * d + k] -= cw * x[k];
      checksum += st.W[i * d + k];
    }
    const da = -lrr * h[i];
    st.a[i] = ai + da;
    checksum += st.a[i];
    st.S[i] += cw * cw * xx - da * da;
  }
  st.checksum[0] = checksum;
}

/**
 * g = ∇_θ L = (1/n) Σ_j x_j (θ x_j − y_j) over the training set (eqs. 47–50, with the
 * erratum j = 1..n), or the population gradient θ − θ* for online data (E[xxᵀ] = I).
 */
export function fullGradient(
  prep: LinearPrepared,
  replica: number,
  theta: Float64Array,
): Float64Array {
  const { d, n } = prep;
  const off = dataOffsets(prep, replica);
  const g = new Float64Array(d);
  if (prep.online) {
    for (let k = 0; k < d; k++) g[k] = theta[k] - prep.thetaStar[off.theta + k];
    return g;
  }
  for (let j = 0; j < n; j++) {
    let res = -prep.y[off.y + j];
    for (let k = 0; k < d; k++) res += theta[k] * prep.X[off.x + j * d + k];
    for (let k = 0; k < d; k++) g[k] += res * prep.X[off.x + j * d + k];
  }
  for (let k = 0; k < d; k++) g[k] /= n;
  return g;
}

/**
 * Eqs. 47–50, simultaneous: w_i ← w_i − η a_i g, a_i ← a_i − η <w_i, g>.
 * Balance: ‖Δw_i‖² − Δa_i² = η² (a_i² ‖g‖² − <w_i, g>²).
 */
export function gdStep(prep: LinearPrepared, st: LinearState, replica: number): void {
  const { m, d } = prep;
  const lr = prep.lr[replica];
  const g = fullGradient(prep, replica, endToEnd(st, m, d));
  let gg = 0;
  for (let k = 0; k < d; k++) gg += g[k] * g[k];
  let checksum = 0;
  for (let i = 0; i < m; i++) {
    const ai = st.a[i];
    let wg = 0;
    for (let k = 0; k < d; k++) wg += st.W[i * d + k] * g[k];
    const cw = lr * ai;
    for (let k = 0; k < d; k++) {
      st.W[i * d + k] -= cw * g[k];
      checksum += st.W[i * d + k];
    }
    const da = -lr * wg;
    st.a[i] = ai + da;
    checksum += st.a[i];
    st.S[i] += cw * cw * gg - da * da;
  }
  st.checksum[0] = checksum;
}

/** Bit of neuron i in the chain draw of one step: bit (i & 31) of word ((i >> 5) & 3) of block i >> 7. */
export function chainBit(seed: number, replica: number, step: number, i: number): number {
  const w = philoxBlock(seed, replica, step, STREAM_CHAIN, i >>> 7);
  return (w[(i >>> 5) & 3] >>> (i & 31)) & 1;
}

/**
 * §3.2.1, eqs. 5–6: w_i ← w_i − η a_i(t) g(t) (GD on the first layer), and the forced chain
 * a_i(t+1) = a_i(t) + δ_i(t) with δ_i = −a_i if a_i = ±c, else ±c at random: a_i alternates
 * between 0 and a fresh ±c. S is not a balance (the chain is no gradient step); it is kept 0.
 */
export function oscillationStep(
  prep: LinearPrepared,
  st: LinearState,
  replica: number,
  step: number,
): void {
  const { m, d } = prep;
  const lr = prep.lr[replica];
  const c = prep.chainAmp[replica];
  const g = fullGradient(prep, replica, endToEnd(st, m, d));
  let checksum = 0;
  const words = new Uint32Array(4);
  for (let i = 0; i < m; i++) {
    if ((i & 127) === 0) {
      philoxBlock(prep.seed, prep.firstReplica + replica, step, STREAM_CHAIN, i >>> 7, words);
    }
    const ai = st.a[i];
    const cw = lr * ai;
    for (let k = 0; k < d; k++) {
      st.W[i * d + k] -= cw * g[k];
      checksum += st.W[i * d + k];
    }
    const bit = (words[(i >>> 5) & 3] >>> (i & 31)) & 1;
    st.a[i] = ai !== 0 ? 0 : bit === 0 ? c : -c;
  }
  st.checksum[0] = checksum;
}

/** One step of the run's algorithm for one replica, in place. */
export function linearStep(
  prep: LinearPrepared,
  st: LinearState,
  replica: number,
  step: number,
  scratch = { x: new Float64Array(prep.d), h: new Float64Array(prep.m) },
): void {
  switch (stepKind(prep, step)) {
    case "sgd":
      return sgdStep(prep, st, replica, step, scratch);
    case "gd":
      return gdStep(prep, st, replica);
    case "oscillation":
      return oscillationStep(prep, st, replica, step);
  }
}

// ---------------------------------------------------------------------------------------
// Metrics (notes §5 and §7 "streaming metrics"); names as issue 5 gives them.

export const LINEAR_METRICS = [
  {
    name: "train_loss",
    doc: "(1/n) Σ_j ½(θx_j − y_j)², clean labels; online: the population loss ½‖θ − θ*‖²",
    scale: "log" as const,
  },
  {
    name: "test_loss",
    doc: "(1/n_test) Σ ½(θx − y)² over the fresh test set, clean labels (Fig. 1a)",
    scale: "log" as const,
  },
  { name: "w_norm_mean", doc: "(1/m) Σ_i ‖w_i‖ (Fig. 1b)", scale: "log" as const },
  { name: "w_norm_min", doc: "min_i ‖w_i‖", scale: "log" as const },
  { name: "w_norm_max", doc: "max_i ‖w_i‖", scale: "log" as const },
  { name: "a_abs_mean", doc: "(1/m) Σ_i |a_i|", scale: "log" as const },
  { name: "a_abs_max", doc: "max_i |a_i|", scale: "log" as const },
  {
    name: "align_abs_cos",
    doc: "(1/m) Σ_i |cos(w_i, θ*)|, the lemmas' normalised alignment (≈ √(2/(πd)) at random)",
    scale: "linear" as const,
  },
  {
    name: "align_signed_cos",
    doc: "(1/m) Σ_i sgn(a_i)·cos(w_i, θ*): aligned neurons have a_i<w_i, θ*> > 0 (P7)",
    scale: "linear" as const,
  },
  {
    name: "align_raw",
    doc: "(1/m) Σ_i <w_i, θ*>, Fig. 1b's label (cancels between ±θ* neurons)",
    scale: "linear" as const,
  },
  {
    name: "lazy_dist_min",
    doc: "min_i ‖w_i − w_i(0)‖; all neurons left the lazy ball once it exceeds 1/√m (Def. 3.1)",
    scale: "log" as const,
  },
  { name: "lazy_dist_max", doc: "max_i ‖w_i − w_i(0)‖, against 1/√m", scale: "log" as const },
  { name: "theta_error", doc: "‖aᵀW − θ*‖ (Lemma 3.5)", scale: "log" as const },
  {
    name: "balance_residual",
    doc:
      "max_i |‖w_i‖² − a_i² − (‖w_i(0)‖² − a_i(0)²) − Σ_t(‖Δw_i‖² − Δa_i²)| (P1, exact identity); NaN for oscillation",
    scale: "log" as const,
  },
];
export const LINEAR_METRIC_NAMES = LINEAR_METRICS.map((m) => m.name);

function halfMse(
  theta: Float64Array,
  X: Float32Array,
  y: Float32Array,
  rows: number,
  xOff: number,
  yOff: number,
): number {
  const d = theta.length;
  let s = 0;
  for (let j = 0; j < rows; j++) {
    let res = -y[yOff + j];
    for (let k = 0; k < d; k++) res += theta[k] * X[xOff + j * d + k];
    s += 0.5 * res * res;
  }
  return s / rows;
}

/** Per-neuron quantities: ‖w_i‖, <w_i, θ*>, ‖w_i − w_i(0)‖. */
export function neuronStats(prep: LinearPrepared, st: LinearState, replica: number) {
  const { m, d } = prep;
  const off = dataOffsets(prep, replica);
  const w0Off = prep.initPerReplica ? replica * m * d : 0;
  const norm = new Float64Array(m), inner = new Float64Array(m), dist = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let nn = 0, ip = 0, dd = 0;
    for (let k = 0; k < d; k++) {
      const w = st.W[i * d + k];
      nn += w * w;
      ip += w * prep.thetaStar[off.theta + k];
      const e = w - prep.W0[w0Off + i * d + k];
      dd += e * e;
    }
    norm[i] = Math.sqrt(nn);
    inner[i] = ip;
    dist[i] = Math.sqrt(dd);
  }
  return { norm, inner, dist };
}

export function linearMetrics(
  prep: LinearPrepared,
  st: LinearState,
  replica: number,
): Record<string, number> {
  const { m, d } = prep;
  const off = dataOffsets(prep, replica);
  const theta = endToEnd(st, m, d);
  let starSq = 0, errSq = 0;
  for (let k = 0; k < d; k++) {
    const ts = prep.thetaStar[off.theta + k];
    starSq += ts * ts;
    errSq += (theta[k] - ts) ** 2;
  }
  const starNorm = Math.sqrt(starSq);
  const { norm, inner, dist } = neuronStats(prep, st, replica);
  let nSum = 0, nMin = Infinity, nMax = -Infinity, aSum = 0, aMax = 0;
  let absCos = 0, signedCos = 0, raw = 0, dMin = Infinity, dMax = -Infinity, bal = 0;
  for (let i = 0; i < m; i++) {
    nSum += norm[i];
    nMin = Math.min(nMin, norm[i]);
    nMax = Math.max(nMax, norm[i]);
    const aAbs = Math.abs(st.a[i]);
    aSum += aAbs;
    aMax = Math.max(aMax, aAbs);
    // A zero neuron has no direction: it counts as cos = 0.
    const cos = norm[i] > 0 && starNorm > 0 ? inner[i] / (norm[i] * starNorm) : 0;
    absCos += Math.abs(cos);
    signedCos += Math.sign(st.a[i]) * cos;
    raw += inner[i];
    dMin = Math.min(dMin, dist[i]);
    dMax = Math.max(dMax, dist[i]);
    const residual = norm[i] * norm[i] - st.a[i] * st.a[i] - st.c0[i] - st.S[i];
    bal = Math.max(bal, Math.abs(residual));
  }
  return {
    train_loss: prep.online ? 0.5 * errSq : halfMse(theta, prep.X, prep.y, prep.n, off.x, off.y),
    test_loss: halfMse(theta, prep.Xtest, prep.ytest, prep.nTest, off.xTest, off.yTest),
    w_norm_mean: nSum / m,
    w_norm_min: nMin,
    w_norm_max: nMax,
    a_abs_mean: aSum / m,
    a_abs_max: aMax,
    align_abs_cos: absCos / m,
    align_signed_cos: signedCos / m,
    align_raw: raw / m,
    lazy_dist_min: dMin,
    lazy_dist_max: dMax,
    theta_error: Math.sqrt(errSq),
    balance_residual: prep.algo === "oscillation" ? NaN : bal,
  };
}

/** The per-neuron frame row of one replica: [‖w_i‖ | <w_i, θ*> | a_i], each block m long. */
export function neuronFrameRow(
  prep: LinearPrepared,
  st: LinearState,
  replica: number,
  out: Float32Array,
  offset: number,
): void {
  const { m } = prep;
  const { norm, inner } = neuronStats(prep, st, replica);
  for (let i = 0; i < m; i++) {
    out[offset + i] = norm[i];
    out[offset + m + i] = inner[i];
    out[offset + 2 * m + i] = st.a[i];
  }
}

export function linearReferenceSession(
  prep: LinearPrepared,
  spec: RunSpec,
  state?: SessionState,
): KernelSession {
  const states = Array.from({ length: prep.replicas }, (_, r) => initialState(prep, r));
  const scratch = { x: new Float64Array(prep.d), h: new Float64Array(prep.m) };
  const { m, d, replicas: R } = prep;
  const inner = steppedReferenceSession({
    spec,
    state,
    // Checkpoint: W [R × m × d], a, S (the balance identity's sum) and S_comp [R × m].
    save: () => {
      const W = new Float64Array(R * m * d), a = new Float64Array(R * m);
      const S = new Float64Array(R * m);
      states.forEach((st, r) => {
        W.set(st.W, r * m * d);
        a.set(st.a, r * m);
        S.set(st.S, r * m);
      });
      return { arrays: { W, a, S, S_comp: new Float64Array(R * m) } };
    },
    load: (cp) => {
      const W = stateArray(cp, "W", R * m * d), a = stateArray(cp, "a", R * m);
      const S = stateArray(cp, "S", R * m), comp = stateArray(cp, "S_comp", R * m);
      states.forEach((st, r) => {
        st.W.set(W.subarray(r * m * d, (r + 1) * m * d));
        st.a.set(a.subarray(r * m, (r + 1) * m));
        // A kernel's compensated sum S − comp, in float64.
        for (let i = 0; i < m; i++) st.S[i] = S[r * m + i] - comp[r * m + i];
      });
    },
    metricNames: LINEAR_METRIC_NAMES,
    stepReplica: (r, t) => {
      linearStep(prep, states[r], r, t, scratch);
      return states[r].checksum;
    },
    metricsOf: (r) => linearMetrics(prep, states[r], r),
    frame: prep.frameEvery > 0
      ? () => {
        const width = 3 * prep.m;
        const values = new Float32Array(prep.replicas * width);
        states.forEach((st, r) => neuronFrameRow(prep, st, r, values, r * width));
        return { name: NEURON_FRAME, values, width };
      }
      : undefined,
  });
  return wrapLinearSession(inner, prep, spec, state);
}
