// @ts-nocheck: AssemblyScript source (i32, f32, v128, f32x4, load<T>): asc type-checks it.
/**
 * PEGR kernel (server/experiments/pegr.ts, mathematics in pegr_model.ts): advances R replicas
 * of the two-patch ReLU² CNN by full-batch GD on L_S, on the PEGR objective or on the FGR
 * objective, float32 weights, f32x4 SIMD for the two O(m·n·d) passes of a step.
 *
 * One step of replica r from step t (every quantity from the old W: a simultaneous update):
 *   e_{q,i} = σ_p·<w_q, z_i>  (SIMD, four z rows per pass)     s_q = ‖μ‖·w_q[0]
 *   a = ReLU(y_i s_q), b = ReLU(e_{q,i}); f_i, ζ_i, ℓ'_i, ℓ''_i in float64
 *   direction_q = α_q μ + Σ_i β_{q,i} ξ_i with α, β from the closed forms (float64, O(m·n)):
 *     gd   α_q = Σ_i c_{q,i} a y_i, β_{q,i} = c_{q,i} b, c_{q,i} = 2 j y_i ℓ'_i/(n m)
 *     pegr + λ[(4ℓ'²/(n m²))(a‖μ‖² y_i, b‖ξ_i‖²) + (8ℓ'ℓ''ζ_i j y_i/(n m³))(a y_i, b)]
 *     fgr  + c_F λ H(∇L), with <ξ_i, v_q> = σ_p² Σ_k β_{q,k} <z_i, z_k> from the Gram matrix
 *   w_q ← w_q − lr·σ_p Σ_i β_{q,i} z_i  (SIMD),  w_q[0] ← w_q[0] − lr·α_q‖μ‖
 * μ = ‖μ‖e_1 and z_i[0] = 0, so the SIMD pass leaves coordinate 0 to the μ term.
 *
 * Layout (the host fills it through the pointer getters after setup()): d is padded to
 * dp = 4⌈d/4⌉ with zero columns (z, the test z and w stay 0 there). Replicas run one after
 * another over the whole call (replica-outer), so one replica's weights stay in cache. The
 * host splits calls at snapshot steps and computes the metrics from the float32 weights in
 * float64 (the reference's formulas), except the test accuracy, which `testAccuracy` does
 * here with SIMD (2m·n_test·d multiply-adds per snapshot).
 */
import { dot, dot4, dot8, madd } from "./simd.ts";
import { allocZeroed } from "./memory.ts";

const ALGO_PEGR = 1;
const ALGO_FGR = 2;

let dp = 0; // d padded to a multiple of 4 (the real d only matters to the host)
let n = 0;
let m = 0;
let rows = 0;
let nTest = 0;
let replicas = 0;
let sets = 1;
let algo = 0;
let muNorm: f64 = 1;
let regOff: f64 = 0;
let fgrScale: f64 = 2;

let Z: usize = 0; // [sets][n][dp] f32: training noise directions z_i
let Y: usize = 0; // [sets][n] f32: labels
let ZT: usize = 0; // [sets][nTest][dp] f32: test noise directions
let YT: usize = 0; // [sets][nTest] f32: test labels
let ZGRAM: usize = 0; // [sets][n][n] f64: <z_i, z_k>
let W: usize = 0; // [R][rows][dp] f32: the state
let HYPER: usize = 0; // [R][4] f64: lr, σ_p, λ, unused (host-written)
let DIVERGED: usize = 0; // [R] f64: step at which the state became non-finite, or -1
// Scratch of the current step (float64 unless said otherwise).
let E: usize = 0; // [rows][n] <w_q, ξ_i>
let S: usize = 0; // [rows] <w_q, μ>
let FI: usize = 0; // [n] f_i
let ZETA: usize = 0; // [n] ζ_i
let L1: usize = 0; // [n] ℓ'_i
let L2: usize = 0; // [n] ℓ''_i
let ALPHA: usize = 0; // [rows] μ coefficients of the direction
let BETA: usize = 0; // [rows][n] ξ coefficients of the direction
let GALPHA: usize = 0; // [rows] ∇L_S's μ coefficients (FGR)
let GBETA: usize = 0; // [rows][n] ∇L_S's ξ coefficients (FGR)
let VXI: usize = 0; // [rows][n] <ξ_i, v_q> (FGR)
let GV: usize = 0; // [n] <g̃_i, v> (FGR)
let CF: usize = 0; // [n rounded to 4] f32: lr·σ_p·β_{q,i} of the row being updated
let XISQ: usize = 0; // [n] ‖ξ_i‖² = σ_p²<z_i, z_i> of the replica being stepped
const TEST_BLOCK = 64;
let DOT8: usize = 0; // [8] f32: one dot8 pass of rowDots
let TDOTS: usize = 0; // [TEST_BLOCK] test inner products of one filter
let TF: usize = 0; // [TEST_BLOCK] test outputs f

/** Allocates every buffer; call once per instance before filling data and hyper-parameters. */
export function setup(
  dIn: i32,
  nIn: i32,
  mIn: i32,
  nTestIn: i32,
  replicasIn: i32,
  setsIn: i32,
  algoIn: i32,
): void {
  dp = (dIn + 3) & ~3;
  n = nIn;
  m = mIn;
  rows = 2 * mIn;
  nTest = nTestIn;
  replicas = replicasIn;
  sets = setsIn;
  algo = algoIn;
  DOT8 = allocZeroed(32);
  Z = allocZeroed(sets * n * dp * 4);
  Y = allocZeroed(sets * n * 4);
  ZT = allocZeroed(sets * nTest * dp * 4);
  YT = allocZeroed(sets * nTest * 4);
  ZGRAM = allocZeroed(sets * n * n * 8);
  W = allocZeroed(replicas * rows * dp * 4);
  HYPER = allocZeroed(replicas * 32);
  DIVERGED = allocZeroed(replicas * 8);
  E = allocZeroed(rows * n * 8);
  S = allocZeroed(rows * 8);
  FI = allocZeroed(n * 8);
  ZETA = allocZeroed(n * 8);
  L1 = allocZeroed(n * 8);
  L2 = allocZeroed(n * 8);
  ALPHA = allocZeroed(rows * 8);
  BETA = allocZeroed(rows * n * 8);
  GALPHA = allocZeroed(rows * 8);
  GBETA = allocZeroed(rows * n * 8);
  VXI = allocZeroed(rows * n * 8);
  GV = allocZeroed(n * 8);
  CF = allocZeroed(((n + 3) & ~3) * 4);
  XISQ = allocZeroed(n * 8);
  TDOTS = allocZeroed(TEST_BLOCK * 8);
  TF = allocZeroed(TEST_BLOCK * 8);
  for (let r = 0; r < replicas; r++) store<f64>(DIVERGED + (<usize> r << 3), -1);
}

/** ‖μ‖, the first update index with λ = 0, and the FGR multiplier (2 §4.1, 1 §5.4). */
export function setGlobals(muNormIn: f64, regOffIn: f64, fgrScaleIn: f64): void {
  muNorm = muNormIn;
  regOff = regOffIn;
  fgrScale = fgrScaleIn;
}

export function paddedDim(): i32 {
  return dp;
}
export function zPtr(): usize {
  return Z;
}
export function yPtr(): usize {
  return Y;
}
export function zTestPtr(): usize {
  return ZT;
}
export function yTestPtr(): usize {
  return YT;
}
export function zGramPtr(): usize {
  return ZGRAM;
}
export function wPtr(): usize {
  return W;
}
export function hyperPtr(): usize {
  return HYPER;
}
export function divergedPtr(): usize {
  return DIVERGED;
}

function f64At(base: usize, index: i32): f64 {
  return load<f64>(base + (<usize> index << 3));
}

function setF64(base: usize, index: i32, value: f64): void {
  store<f64>(base + (<usize> index << 3), value);
}

/**
 * out[k] = scale·<w, z_k> for the `count` rows of z starting at `zs` (row stride dp floats),
 * eight (then four) rows per pass so each w vector is loaded once and independent
 * accumulators hide the multiply-add latency; each row's sum is in dot4's order.
 */
function rowDots(w: usize, zs: usize, count: i32, scale: f64, out: usize): void {
  const rowBytes = <usize> dp << 2;
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    dot8(zs + <usize> i * rowBytes, rowBytes, w, rowBytes, DOT8);
    for (let j = 0; j < 8; j++) {
      setF64(out, i + j, scale * <f64> load<f32>(DOT8 + (<usize> j << 2)));
    }
  }
  for (; i + 4 <= count; i += 4) {
    const dots = dot4(zs + <usize> i * rowBytes, rowBytes, w, rowBytes);
    setF64(out, i, scale * <f64> f32x4.extract_lane(dots, 0));
    setF64(out, i + 1, scale * <f64> f32x4.extract_lane(dots, 1));
    setF64(out, i + 2, scale * <f64> f32x4.extract_lane(dots, 2));
    setF64(out, i + 3, scale * <f64> f32x4.extract_lane(dots, 3));
  }
  for (; i < count; i++) {
    setF64(out, i, scale * <f64> dot(zs + <usize> i * rowBytes, w, rowBytes));
  }
}

function relu(x: f64): f64 {
  return x > 0 ? x : 0;
}

/** ℓ'(z) = −1/(1 + e^z), as pegr_model.ts computes it. */
function logisticD1(z: f64): f64 {
  if (z > 0) {
    const e = Math.exp(-z);
    return -e / (1 + e);
  }
  return -1 / (1 + Math.exp(z));
}

/** ℓ''(z) = e^{−|z|}/(1 + e^{−|z|})². */
function logisticD2(z: f64): f64 {
  const e = Math.exp(-Math.abs(z));
  return e / ((1 + e) * (1 + e));
}

/** Inner products, margins and loss derivatives of replica r's current weights. */
function forwardPass(w: usize, z: usize, y: usize, sigmaP: f64, xiSq: usize): void {
  const mf = <f64> m;
  const muSq = muNorm * muNorm;
  for (let i = 0; i < n; i++) {
    setF64(FI, i, 0);
    setF64(ZETA, i, 0);
  }
  for (let q = 0; q < rows; q++) {
    const wq = w + <usize> (q * dp) * 4;
    const sq = muNorm * <f64> load<f32>(wq);
    setF64(S, q, sq);
    rowDots(wq, z, n, sigmaP, E + <usize> (q * n) * 8);
    const j: f64 = q < m ? 1 : -1;
    for (let i = 0; i < n; i++) {
      const yi = <f64> load<f32>(y + (<usize> i << 2));
      const a = relu(yi * sq);
      const b = relu(f64At(E, q * n + i));
      setF64(FI, i, f64At(FI, i) + j * (a * a + b * b) / mf);
      setF64(ZETA, i, f64At(ZETA, i) + a * a * muSq + b * b * f64At(xiSq, i));
    }
  }
  for (let i = 0; i < n; i++) {
    const u = <f64> load<f32>(y + (<usize> i << 2)) * f64At(FI, i);
    setF64(L1, i, logisticD1(u));
    setF64(L2, i, logisticD2(u));
  }
}

/** ∇L_S's coefficients into (alpha, beta). */
function lossGradient(y: usize, alpha: usize, beta: usize): void {
  const scale = 2 / (<f64> n * <f64> m);
  for (let q = 0; q < rows; q++) {
    const j: f64 = q < m ? 1 : -1;
    let aq: f64 = 0;
    for (let i = 0; i < n; i++) {
      const yi = <f64> load<f32>(y + (<usize> i << 2));
      const c = f64At(L1, i) * scale * j * yi;
      aq += c * relu(yi * f64At(S, q)) * yi;
      setF64(beta, q * n + i, c * relu(f64At(E, q * n + i)));
    }
    setF64(alpha, q, aq);
  }
}

/** Adds λ × the PEGR penalty's gradient (pegr_model.ts pegrPenaltyGradient). */
function addPegr(y: usize, lambda: f64, xiSq: usize): void {
  const nf = <f64> n, mf = <f64> m;
  const muSq = muNorm * muNorm;
  for (let q = 0; q < rows; q++) {
    const j: f64 = q < m ? 1 : -1;
    let aq: f64 = 0;
    for (let i = 0; i < n; i++) {
      const yi = <f64> load<f32>(y + (<usize> i << 2));
      const l1 = f64At(L1, i);
      const a = relu(yi * f64At(S, q)), b = relu(f64At(E, q * n + i));
      const shrink = 4 * l1 * l1 / (nf * mf * mf);
      const cross = 8 / (nf * mf * mf * mf) * l1 * f64At(L2, i) * f64At(ZETA, i) * j * yi;
      aq += (shrink * a * muSq + cross * a) * yi;
      const k = q * n + i;
      setF64(BETA, k, f64At(BETA, k) + lambda * (shrink * b * f64At(xiSq, i) + cross * b));
    }
    setF64(ALPHA, q, f64At(ALPHA, q) + lambda * aq);
  }
}

/** Adds c_F·λ·H∇L_S (pegr_model.ts hessianVectorProduct with v = ∇L_S in coefficients). */
function addFgr(y: usize, lambda: f64, sigmaP: f64, gram: usize): void {
  const nf = <f64> n, mf = <f64> m;
  const muSq = muNorm * muNorm;
  const s2 = sigmaP * sigmaP;
  lossGradient(y, GALPHA, GBETA);
  // <ξ_i, v_q> = σ_p² Σ_k β_{q,k} <z_k, z_i>; <μ, v_q> = α_q‖μ‖².
  for (let q = 0; q < rows; q++) {
    for (let i = 0; i < n; i++) {
      let s: f64 = 0;
      for (let k = 0; k < n; k++) s += f64At(GBETA, q * n + k) * f64At(gram, k * n + i);
      setF64(VXI, q * n + i, s2 * s);
    }
  }
  for (let i = 0; i < n; i++) setF64(GV, i, 0);
  for (let q = 0; q < rows; q++) {
    const j: f64 = q < m ? 1 : -1;
    const vMu = f64At(GALPHA, q) * muSq;
    for (let i = 0; i < n; i++) {
      const yi = <f64> load<f32>(y + (<usize> i << 2));
      const a = relu(yi * f64At(S, q)), b = relu(f64At(E, q * n + i));
      setF64(GV, i, f64At(GV, i) + (2 * j * yi / mf) * (a * yi * vMu + b * f64At(VXI, q * n + i)));
    }
  }
  const scale = fgrScale * lambda;
  for (let q = 0; q < rows; q++) {
    const j: f64 = q < m ? 1 : -1;
    const vMu = f64At(GALPHA, q) * muSq;
    let hq: f64 = 0;
    for (let i = 0; i < n; i++) {
      const yi = <f64> load<f32>(y + (<usize> i << 2));
      const s = yi * f64At(S, q), e = f64At(E, q * n + i);
      const c = 2 * j * yi / (mf * nf);
      const outer = f64At(L2, i) * f64At(GV, i) * c;
      const l1c = f64At(L1, i) * c;
      hq += outer * relu(s) * yi + (s > 0 ? l1c * vMu : 0);
      const hb = outer * relu(e) + (e > 0 ? l1c * f64At(VXI, q * n + i) : 0);
      const k = q * n + i;
      setF64(BETA, k, f64At(BETA, k) + scale * hb);
    }
    setF64(ALPHA, q, f64At(ALPHA, q) + scale * hq);
  }
}

/**
 * w_q ← w_q − Σ_i CF_i z_i on 16 coordinates at a time; returns the non-finite probe
 * (w' − w', 0 unless some new weight is NaN or ±Inf).
 */
function updateRow(wq: usize, z: usize): v128 {
  const rowBytes = <usize> dp << 2;
  let probe = f32x4.splat(0);
  let k: usize = 0;
  // Eight vectors per pass: eight independent accumulators cover the multiply-add latency.
  for (; k + 128 <= rowBytes; k += 128) {
    let g0 = f32x4.splat(0), g1 = f32x4.splat(0), g2 = f32x4.splat(0), g3 = f32x4.splat(0);
    let g4 = f32x4.splat(0), g5 = f32x4.splat(0), g6 = f32x4.splat(0), g7 = f32x4.splat(0);
    let p = z + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const ci = v128.load_splat<f32>(CF + (<usize> i << 2));
      g0 = madd(ci, v128.load(p), g0);
      g1 = madd(ci, v128.load(p, 16), g1);
      g2 = madd(ci, v128.load(p, 32), g2);
      g3 = madd(ci, v128.load(p, 48), g3);
      g4 = madd(ci, v128.load(p, 64), g4);
      g5 = madd(ci, v128.load(p, 80), g5);
      g6 = madd(ci, v128.load(p, 96), g6);
      g7 = madd(ci, v128.load(p, 112), g7);
    }
    probe = f32x4.add(probe, subStore(wq + k, g0));
    probe = f32x4.add(probe, subStore(wq + k + 16, g1));
    probe = f32x4.add(probe, subStore(wq + k + 32, g2));
    probe = f32x4.add(probe, subStore(wq + k + 48, g3));
    probe = f32x4.add(probe, subStore(wq + k + 64, g4));
    probe = f32x4.add(probe, subStore(wq + k + 80, g5));
    probe = f32x4.add(probe, subStore(wq + k + 96, g6));
    probe = f32x4.add(probe, subStore(wq + k + 112, g7));
  }
  for (; k + 64 <= rowBytes; k += 64) {
    let g0 = f32x4.splat(0);
    let g1 = f32x4.splat(0);
    let g2 = f32x4.splat(0);
    let g3 = f32x4.splat(0);
    let p = z + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const ci = v128.load_splat<f32>(CF + (<usize> i << 2));
      g0 = madd(ci, v128.load(p), g0);
      g1 = madd(ci, v128.load(p, 16), g1);
      g2 = madd(ci, v128.load(p, 32), g2);
      g3 = madd(ci, v128.load(p, 48), g3);
    }
    probe = f32x4.add(probe, subStore(wq + k, g0));
    probe = f32x4.add(probe, subStore(wq + k + 16, g1));
    probe = f32x4.add(probe, subStore(wq + k + 32, g2));
    probe = f32x4.add(probe, subStore(wq + k + 48, g3));
  }
  for (; k < rowBytes; k += 16) {
    let g = f32x4.splat(0);
    let p = z + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      g = madd(v128.load_splat<f32>(CF + (<usize> i << 2)), v128.load(p), g);
    }
    probe = f32x4.add(probe, subStore(wq + k, g));
  }
  return probe;
}

function subStore(p: usize, g: v128): v128 {
  const wn = f32x4.sub(v128.load(p), g);
  v128.store(p, wn);
  return f32x4.sub(wn, wn);
}

/** One update of replica r from step t; false if the new state is not finite. */
function stepReplica(r: i32, t: f64): bool {
  const set = sets == 1 ? 0 : r;
  const z = Z + <usize> (set * n) * <usize> (dp * 4);
  const y = Y + <usize> (set * n) * 4;
  const gram = ZGRAM + <usize> (set * n * n) * 8;
  const w = W + <usize> (r * rows * dp) * 4;
  const h = HYPER + (<usize> r << 5);
  const lr = load<f64>(h);
  const sigmaP = load<f64>(h, 8);
  const lambda = t < regOff ? load<f64>(h, 16) : 0;
  for (let i = 0; i < n; i++) setF64(XISQ, i, sigmaP * sigmaP * f64At(gram, i * n + i));
  forwardPass(w, z, y, sigmaP, XISQ);
  lossGradient(y, ALPHA, BETA);
  if (lambda > 0 && algo == ALGO_PEGR) addPegr(y, lambda, XISQ);
  else if (lambda > 0 && algo == ALGO_FGR) addFgr(y, lambda, sigmaP, gram);
  let probe = f32x4.splat(0);
  for (let q = 0; q < rows; q++) {
    for (let i = 0; i < n; i++) {
      store<f32>(CF + (<usize> i << 2), <f32> (lr * sigmaP * f64At(BETA, q * n + i)));
    }
    const wq = w + <usize> (q * dp) * 4;
    probe = f32x4.add(probe, updateRow(wq, z));
    // z_i[0] = 0: coordinate 0 carries only the μ = ‖μ‖e_1 term.
    const w0 = load<f32>(wq) - <f32> (lr * f64At(ALPHA, q) * muNorm);
    store<f32>(wq, w0);
    probe = f32x4.add(probe, f32x4.splat(w0 - w0));
  }
  return !v128.any_true(f32x4.ne(probe, probe));
}

/**
 * Advances every live replica from step `from` by `count` steps (the host splits calls at
 * snapshot steps). Steps are f64 (exact to 2^53).
 */
export function advance(fromF: f64, count: i32): void {
  for (let r = 0; r < replicas; r++) {
    if (load<f64>(DIVERGED + (<usize> r << 3)) >= 0) continue;
    let s = fromF;
    for (let c = 0; c < count; c++) {
      const ok = stepReplica(r, s);
      s += 1;
      if (!ok) {
        store<f64>(DIVERGED + (<usize> r << 3), s);
        break;
      }
    }
  }
}

/**
 * Fraction of replica r's test points with y·f(W, x) > 0, x = [y μ, σ_p z]: the test inner
 * products in float32 SIMD, the ReLU² sums in float64.
 */
export function testAccuracy(r: i32): f64 {
  const set = sets == 1 ? 0 : r;
  const zt = ZT + <usize> (set * nTest) * <usize> (dp * 4);
  const yt = YT + <usize> (set * nTest) * 4;
  const w = W + <usize> (r * rows * dp) * 4;
  const sigmaP = load<f64>(HYPER + (<usize> r << 5), 8);
  const block = TEST_BLOCK;
  const dots = TDOTS;
  const f = TF;
  let correct = 0;
  for (let t0 = 0; t0 < nTest; t0 += block) {
    const count = min(block, nTest - t0);
    for (let k = 0; k < count; k++) setF64(f, k, 0);
    for (let q = 0; q < rows; q++) {
      const wq = w + <usize> (q * dp) * 4;
      const j: f64 = q < m ? 1 : -1;
      const sq = muNorm * <f64> load<f32>(wq);
      rowDots(wq, zt + <usize> (t0 * dp) * 4, count, sigmaP, dots);
      for (let k = 0; k < count; k++) {
        const y = <f64> load<f32>(yt + (<usize> (t0 + k) << 2));
        const a = relu(y * sq), b = relu(f64At(dots, k));
        setF64(f, k, f64At(f, k) + j * (a * a + b * b));
      }
    }
    for (let k = 0; k < count; k++) {
      if (<f64> load<f32>(yt + (<usize> (t0 + k) << 2)) * f64At(f, k) > 0) correct++;
    }
  }
  return <f64> correct / <f64> nTest;
}
