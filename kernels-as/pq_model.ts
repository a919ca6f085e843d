// @ts-nocheck: AssemblyScript source (i32, f32, v128, f32x4, load<T>): asc type-checks it.
/**
 * The P/Q kernels of `large-lr` and `label-noise-anneal` (server/experiments/pq_model.ts,
 * large_lr.ts, label_noise_anneal.ts): R replicas of the block-diagonal two-ReLU network
 * f(x) = Σ a_j ReLU(W_j·x1) + Σ b_j ReLU(V_j·x2), float32 state, f32x4 SIMD over the d
 * coordinates of the P block. The kernel only trains; the host reads the float32 weights
 * straight from this memory and evaluates the metrics with the float64 reference code, so
 * metric formulas exist once.
 *
 * Algorithms (codes): 0 large-then-small, 1 small, 2 small-preact-noise (full-batch GD with
 * Gaussian gradient noise ξ ~ N(0, τ_ξ²) and weight decay: U ← (1 − γλ)U − γ(∇L̂ + ξ));
 * 3 lnsgd-ls, 4 lnsgd-s (batch-1 SGD on one example whose label is flipped with
 * probability δ); 5 fbgd-ls (full-batch GD, clean labels). The anneal and the stored
 * activation pattern follow pq_anneal.ts: decided at the start of update t from U_t.
 * Random draws follow the experiments' headers exactly (Philox, key (seed, replica), counter
 * step t; normals filled row-major over the d real columns).
 *
 * Layout: x1 rows and W, V rows are padded to dp = 4⌈d/4⌉ with zero columns (the padding
 * of W and V stays 0: its data, gradient and noise are 0). x2 is two floats per example (its
 * coordinates along z and ζ/r); V's columns 0 and 1 meet the data, all d feel decay and noise.
 * Replicas run one after another for a whole call (their weights stay in cache).
 */
import { fillNormals, normalAt, philoxBlock, uniform24, uniformIndex, w0, w1 } from "./philox.ts";
import { dot, dot4, madd, nmadd } from "./simd.ts";
import { allocZeroed } from "./memory.ts";

const ALGO_LARGE_THEN_SMALL = 0;
// 1 = small needs no branch of its own (η2 throughout, like the default path).
const ALGO_SMALL_PREACT = 2;
const ALGO_LNSGD_LS = 3;
const ALGO_LNSGD_S = 4;
const ALGO_FBGD_LS = 5;
const STREAM_XI_W: u32 = 0;
const STREAM_XI_V: u32 = 1;
const STREAM_PREACT: u32 = 2;
const STREAM_SGD: u32 = 3;
const SUBSET_P_ONLY = 0;
const SUBSET_Q_ONLY = 1;

/** Per-replica hyper-parameters (f64, host-written): offsets in HYPER rows of 8. */
const H_ETA1 = 0;
const H_ETA2 = 8;
const H_LAMBDA = 16;
const H_TAU_XI = 24;
const H_TAU_PRE = 32;
const H_DELTA = 40;
const H_THRESHOLD = 48;
/** Stop loss ε2 (or ε′2) of the stopping rule; negative: never (pq_anneal.ts). */
const H_STOP = 56;
/** Per-replica state (f64): offsets in STATE rows of 8. */
const S_ANNEALED_AT = 0;
const S_LR = 8;
const S_DIVERGED = 16;
const S_ANNEAL_LOSS = 24;
const S_STOPPED_AT = 32;
const S_STOP_LOSS = 40;

let d = 0;
let dp = 0;
/** Rows of the W block (m_p/2) and of the V block (m_q/2). */
let halfP = 0;
let halfQ = 0;
let n = 0;
let replicas = 0;
let sets = 1;
let algo = 0;
let seed: u32 = 0;
/** Global index of replica 0 when this run is a shard of a larger one (RunSpec.firstReplica). */
let firstReplica: u32 = 0;
let annealByLoss = true;
let annealStep: i64 = 0;
let checkEvery: i64 = 1;
let noiseOffStep: i64 = 0;
/**
 * blocks = q, q-plane or q-rays: x1 is zero, so W's products with it (+0) and gradient are
 * skipped, and X1 holds no data (one row, never read).
 */
let x1Zero = false;
/** blocks = q-plane or q-rays: only V's columns 0, 1 are updated (pq_model.ts planeUpdate). */
let plane = false;
/**
 * blocks = q-rays: clean passes over the data run the V block on the three rays z, z ± ζ
 * only and scale by each example's α (pq_model.ts raysLossAndGradient): O(N + m_q).
 */
let rays = false;
/** float32(r): the ζ coordinate of the rays z ± ζ (q-rays). */
let rayR: f32 = 0;
const RAY_NONE = 3;

let X1: usize = 0; // [sets][n][dp] f32
let X2: usize = 0; // [sets][n][2] f32
let Y: usize = 0; // [sets][n] f32
let SUB: usize = 0; // [sets][n] i32
let A: usize = 0; // [R][halfP] f32: second layer of W
let B: usize = 0; // [R][halfQ] f32: second layer of V
let W: usize = 0; // [R][halfP][dp] f32
let V: usize = 0; // [R][halfQ][dp] f32
let WN: usize = 0; // [R][halfP][dp] f32: the noise part W̃ of W (pq_model.ts trackNoisePart)
let HYPER: usize = 0; // [R][8] f64
let STATE: usize = 0; // [R][8] f64
let PATTERN: usize = 0; // [R][n][halfP + halfQ] u8
let AT_ANNEAL: usize = 0; // [R][halfP + halfQ][dp] f32: W's rows then V's at the anneal step
let GW: usize = 0; // [halfP][dp] f32 scratch: gradient of the W block
let GV: usize = 0; // [halfQ][2] f32 scratch: gradient of V's columns 0, 1
let HW: usize = 0; // [halfP] f32 scratch: pre-activations of one example
let HV: usize = 0; // [halfQ] f32
let PRE: usize = 0; // [halfP + halfQ] f32: pre-activation noise of the step
let NOISE: usize = 0; // [max(halfP, halfQ)·d] f32: gradient noise of a block (unpadded, as drawn)
let HRAY: usize = 0; // [3][halfQ] f32 scratch: V_j·u_k on the rays z, z + ζ, z − ζ (q-rays)
// q-rays with pre-activation noise (raysPreactLoss; pq_model.ts raysPreactLossAndGradient):
let RAY_ORDER: usize = 0; // [sets][n] i32: each ray's examples sorted by α (host-written)
let RAY_START: usize = 0; // [sets][4] i32: where each ray's run starts, then its end
let PREFIX: usize = 0; // [n + 1] f64 scratch: prefix sums of ℓ'_i y_i α_i / N along a ray
let POS: usize = 0; // [halfQ] i32 scratch: where unit j toggles along the ray
let EV_T: usize = 0; // [halfQ] f64 scratch: t_j = −ξ_j / s_j
let EV_J: usize = 0; // [halfQ] i32 scratch: the toggling units, sorted by t

/** Replica r draws its noise with Philox key (seed, first + r); call after setup (default 0). */
export function setFirstReplica(first: u32): void {
  firstReplica = first;
}

/**
 * The block-alone mode (pq_model.ts `blocks`): call before setup, which sizes X1 by it
 * (default: both blocks). rF32 is float32(r), used by q-rays only.
 */
export function setBlocks(x1ZeroIn: i32, planeIn: i32, raysIn: i32, rF32: f32): void {
  x1Zero = x1ZeroIn != 0;
  plane = planeIn != 0;
  rays = raysIn != 0;
  rayR = rF32;
}

/** Allocates every buffer; call once per instance, then fill data, weights and HYPER. */
export function setup(
  dIn: i32,
  nIn: i32,
  halfPIn: i32,
  halfQIn: i32,
  replicasIn: i32,
  setsIn: i32,
  algoIn: i32,
  seedIn: u32,
): void {
  d = dIn;
  dp = (dIn + 3) & ~3;
  n = nIn;
  halfP = halfPIn;
  halfQ = halfQIn;
  const halfMax = max(halfP, halfQ);
  replicas = replicasIn;
  sets = setsIn;
  algo = algoIn;
  seed = seedIn;
  X1 = allocZeroed(x1Zero ? dp * 4 : sets * n * dp * 4);
  X2 = allocZeroed(sets * n * 8);
  Y = allocZeroed(sets * n * 4);
  SUB = allocZeroed(sets * n * 4);
  A = allocZeroed(replicas * halfP * 4);
  B = allocZeroed(replicas * halfQ * 4);
  W = allocZeroed(replicas * halfP * dp * 4);
  V = allocZeroed(replicas * halfQ * dp * 4);
  WN = allocZeroed(replicas * halfP * dp * 4);
  HYPER = allocZeroed(replicas * 64);
  STATE = allocZeroed(replicas * 64);
  PATTERN = allocZeroed(replicas * n * (halfP + halfQ));
  AT_ANNEAL = allocZeroed(replicas * (halfP + halfQ) * dp * 4);
  GW = allocZeroed(halfP * dp * 4);
  GV = allocZeroed(halfQ * 8);
  HW = allocZeroed(((halfMax + 3) & ~3) * 4);
  HV = allocZeroed(((halfMax + 3) & ~3) * 4);
  PRE = allocZeroed((halfP + halfQ) * 4 + 16);
  NOISE = allocZeroed(halfMax * d * 4 + 16);
  HRAY = allocZeroed(3 * halfQ * 4 + 16);
  if (rays) {
    RAY_ORDER = allocZeroed(sets * n * 4);
    RAY_START = allocZeroed(sets * 16);
    PREFIX = allocZeroed((n + 1) * 8);
    POS = allocZeroed(halfQ * 4 + 16);
    EV_T = allocZeroed(halfQ * 8 + 16);
    EV_J = allocZeroed(halfQ * 4 + 16);
  }
  for (let r = 0; r < replicas; r++) {
    const s = stateRow(r);
    store<f64>(s, -1, S_ANNEALED_AT);
    store<f64>(s, -1, S_DIVERGED);
    store<f64>(s, -1, S_STOPPED_AT);
  }
}

/** The anneal rule and the steps of the schedule (f64: exact integers). */
export function setSchedule(byLoss: i32, annealAt: f64, every: f64, noiseOff: f64): void {
  annealByLoss = byLoss != 0;
  annealStep = <i64> annealAt;
  checkEvery = <i64> every;
  noiseOffStep = <i64> noiseOff;
}

export function paddedDim(): i32 {
  return dp;
}
export function x1Ptr(): usize {
  return X1;
}
export function x2Ptr(): usize {
  return X2;
}
export function yPtr(): usize {
  return Y;
}
export function subsetPtr(): usize {
  return SUB;
}
export function aPtr(): usize {
  return A;
}
export function bPtr(): usize {
  return B;
}
export function wPtr(): usize {
  return W;
}
export function vPtr(): usize {
  return V;
}
export function wnPtr(): usize {
  return WN;
}
export function hyperPtr(): usize {
  return HYPER;
}
export function statePtr(): usize {
  return STATE;
}
export function atAnnealPtr(): usize {
  return AT_ANNEAL;
}
export function patternPtr(): usize {
  return PATTERN;
}
export function rayOrderPtr(): usize {
  return RAY_ORDER;
}
export function rayStartPtr(): usize {
  return RAY_START;
}

/** ℓ(z) = log(1 + e^(−z)) in float64. */
function logistic(z: f64): f64 {
  return z > 0 ? Math.log1p(Math.exp(-z)) : -z + Math.log1p(Math.exp(z));
}

/** ℓ'(z) = −1/(1 + e^z) in float64. */
function logisticDeriv(z: f64): f64 {
  if (z > 0) {
    const e = Math.exp(-z);
    return -e / (1 + e);
  }
  return -1 / (1 + Math.exp(z));
}

/**
 * Pre-activations of example i of the replica's data set into HW, HV (plus the step's
 * pre-activation noise when `pre`); returns f(x). Four W rows per pass share the x loads.
 */
function forward(r: i32, set: i32, i: i32, pre: bool): f32 {
  const sub = load<i32>(SUB + (<usize> (set * n + i) << 2));
  const hasP = sub != SUBSET_Q_ONLY;
  const hasQ = sub != SUBSET_P_ONLY;
  const rowBytes = <usize> dp << 2;
  const x = X1 + <usize> (set * n + i) * rowBytes;
  const w = W + <usize> (r * halfP) * rowBytes;
  const a = A + (<usize> (r * halfP) << 2);
  const b = B + (<usize> (r * halfQ) << 2);
  let f: f32 = 0;
  let j = 0;
  if (hasP && !x1Zero) {
    for (; j + 4 <= halfP; j += 4) {
      v128.store(HW + (<usize> j << 2), dot4(w + <usize> j * rowBytes, rowBytes, x, rowBytes));
    }
    for (; j < halfP; j++) {
      store<f32>(HW + (<usize> j << 2), dot(w + <usize> j * rowBytes, x, rowBytes));
    }
  } else {
    memory.fill(HW, 0, <usize> halfP << 2);
  }
  const x2 = X2 + (<usize> (set * n + i) << 3);
  const c0 = load<f32>(x2), c1 = load<f32>(x2, 4);
  const v = V + <usize> (r * halfQ) * rowBytes;
  // W_0, V_0, W_1, V_1, …: the summation order of equal widths, kept when they differ.
  const units = max(halfP, halfQ);
  for (let q = 0; q < units; q++) {
    if (q < halfP) {
      let h = load<f32>(HW + (<usize> q << 2));
      if (pre) {
        h += load<f32>(PRE + (<usize> q << 2));
        store<f32>(HW + (<usize> q << 2), h);
      }
      if (h > 0) f += load<f32>(a + (<usize> q << 2)) * h;
    }
    if (q < halfQ) {
      let hv: f32 = 0;
      if (hasQ) {
        const row = v + <usize> q * rowBytes;
        hv = load<f32>(row) * c0 + load<f32>(row, 4) * c1;
      }
      if (pre) hv += load<f32>(PRE + (<usize> (halfP + q) << 2));
      store<f32>(HV + (<usize> q << 2), hv);
      if (hv > 0) f += load<f32>(b + (<usize> q << 2)) * hv;
    }
  }
  return f;
}

/**
 * Adds c·∇f(x_i) (from HW, HV of the last forward) to the W block at `gw` and to V's
 * columns 0, 1 at `gv` with row strides `gvStride` bytes: the gradient scratch (GW, GV) for
 * full-batch GD, or the weights themselves for an SGD step.
 */
function addGradient(
  r: i32,
  set: i32,
  i: i32,
  c: f32,
  gw: usize,
  gv: usize,
  gvStride: usize,
): void {
  const sub = load<i32>(SUB + (<usize> (set * n + i) << 2));
  const rowBytes = <usize> dp << 2;
  const a = A + (<usize> (r * halfP) << 2);
  const b = B + (<usize> (r * halfQ) << 2);
  if (sub != SUBSET_Q_ONLY && !x1Zero) {
    const x = X1 + <usize> (set * n + i) * rowBytes;
    for (let j = 0; j < halfP; j++) {
      if (load<f32>(HW + (<usize> j << 2)) < 0) continue;
      const s = f32x4.splat(c * load<f32>(a + (<usize> j << 2)));
      const g = gw + <usize> j * rowBytes;
      for (let k: usize = 0; k < rowBytes; k += 16) {
        v128.store(g + k, madd(s, v128.load(x + k), v128.load(g + k)));
      }
    }
  }
  if (sub != SUBSET_P_ONLY) {
    const x2 = X2 + (<usize> (set * n + i) << 3);
    const c0 = load<f32>(x2), c1 = load<f32>(x2, 4);
    for (let j = 0; j < halfQ; j++) {
      if (load<f32>(HV + (<usize> j << 2)) < 0) continue;
      const s = c * load<f32>(b + (<usize> j << 2));
      const g = gv + <usize> j * gvStride;
      store<f32>(g, load<f32>(g) + s * c0);
      store<f32>(g, load<f32>(g, 4) + s * c1, 4);
    }
  }
}

/** The ray of example i (pq_model.ts raysOf): 0 z, 1 z + ζ, 2 z − ζ, RAY_NONE: x2 = 0. */
function rayOf(set: i32, i: i32): i32 {
  const sub = load<i32>(SUB + (<usize> (set * n + i) << 2));
  const x2 = X2 + (<usize> (set * n + i) << 3);
  const c0 = load<f32>(x2), c1 = load<f32>(x2, 4);
  if (sub == SUBSET_P_ONLY || c0 == 0) return RAY_NONE;
  return c1 > 0 ? 1 : c1 < 0 ? 2 : 0;
}

/** V_j·u_k of replica r into HRAY; returns g(u_k) of ray k in g0, g1, g2. */
let g0: f32 = 0, g1: f32 = 0, g2: f32 = 0;
function rayOutputs(r: i32): void {
  const rowBytes = <usize> dp << 2;
  const v = V + <usize> (r * halfQ) * rowBytes;
  const b = B + (<usize> (r * halfQ) << 2);
  g0 = 0;
  g1 = 0;
  g2 = 0;
  for (let j = 0; j < halfQ; j++) {
    const row = v + <usize> j * rowBytes;
    const v0 = load<f32>(row), v1 = load<f32>(row, 4), bj = load<f32>(b + (<usize> j << 2));
    const h0 = v0, h1 = v0 + v1 * rayR, h2 = v0 - v1 * rayR;
    store<f32>(HRAY + (<usize> j << 2), h0);
    store<f32>(HRAY + (<usize> (halfQ + j) << 2), h1);
    store<f32>(HRAY + (<usize> (2 * halfQ + j) << 2), h2);
    if (h0 > 0) g0 += bj * h0;
    if (h1 > 0) g1 += bj * h1;
    if (h2 > 0) g2 += bj * h2;
  }
}

/**
 * L̂ of replica r by rays in O(N + m_q) (pq_model.ts raysLossAndGradient); with `grad`, its
 * gradient on V's columns 0, 1 into GV (GW stays zero: x1 = 0).
 */
function raysLoss(r: i32, set: i32, grad: bool): f64 {
  rayOutputs(r);
  let c0: f64 = 0, c1: f64 = 0, c2: f64 = 0;
  let loss: f64 = 0;
  const inv: f64 = 1.0 / <f64> n;
  const atZero = logistic(0);
  for (let i = 0; i < n; i++) {
    const k = rayOf(set, i);
    if (k == RAY_NONE) {
      loss += atZero;
      continue;
    }
    const y = <f64> load<f32>(Y + (<usize> (set * n + i) << 2));
    const alpha = load<f32>(X2 + (<usize> (set * n + i) << 3));
    const f: f32 = alpha * (k == 0 ? g0 : k == 1 ? g1 : g2);
    const z = y * <f64> f;
    // ℓ(z) and ℓ'(z) from one exponential, e = e^(−|z|): the same values as logistic() and
    // logisticDeriv(), and this loop is the step's cost.
    const e = Math.exp(-Math.abs(z));
    loss += (z > 0 ? 0 : -z) + Math.log1p(e);
    if (grad) {
      const c = (z > 0 ? -e / (1 + e) : -1 / (1 + e)) * y * <f64> alpha * inv;
      if (k == 0) c0 += c;
      else if (k == 1) c1 += c;
      else c2 += c;
    }
  }
  if (grad) {
    const b = B + (<usize> (r * halfQ) << 2);
    for (let j = 0; j < halfQ; j++) {
      const bj = <f64> load<f32>(b + (<usize> j << 2));
      let a0: f64 = 0, a1: f64 = 0;
      if (load<f32>(HRAY + (<usize> j << 2)) >= 0) a0 += c0 * bj;
      if (load<f32>(HRAY + (<usize> (halfQ + j) << 2)) >= 0) {
        a0 += c1 * bj;
        a1 += c1 * bj * <f64> rayR;
      }
      if (load<f32>(HRAY + (<usize> (2 * halfQ + j) << 2)) >= 0) {
        a0 += c2 * bj;
        a1 -= c2 * bj * <f64> rayR;
      }
      store<f32>(GV + (<usize> j << 3), <f32> a0);
      store<f32>(GV + (<usize> j << 3), <f32> a1, 4);
    }
  }
  return loss * inv;
}

/** Whether toggle event a comes before b: by t, units turning on (s > 0) first at a tie. */
function eventBefore(a: i32, b: i32, k: i32): bool {
  const ta = load<f64>(EV_T + (<usize> a << 3)), tb = load<f64>(EV_T + (<usize> b << 3));
  if (ta != tb) return ta < tb;
  const onA = load<f32>(HRAY + (<usize> (k * halfQ + a) << 2)) > 0;
  const onB = load<f32>(HRAY + (<usize> (k * halfQ + b) << 2)) > 0;
  return onA && !onB;
}

/** Heap sort of the first `count` units of EV_J by eventBefore. */
function sortEvents(count: i32, k: i32): void {
  for (let root = (count >> 1) - 1; root >= 0; root--) siftDown(root, count, k);
  for (let end = count - 1; end > 0; end--) {
    const top = load<i32>(EV_J);
    store<i32>(EV_J, load<i32>(EV_J + (<usize> end << 2)));
    store<i32>(EV_J + (<usize> end << 2), top);
    siftDown(0, end, k);
  }
}

function siftDown(root: i32, count: i32, k: i32): void {
  let at = root;
  while (true) {
    let child = 2 * at + 1;
    if (child >= count) return;
    const left = load<i32>(EV_J + (<usize> child << 2));
    if (child + 1 < count) {
      const right = load<i32>(EV_J + (<usize> (child + 1) << 2));
      if (eventBefore(left, right, k)) child++;
    }
    const c = load<i32>(EV_J + (<usize> child << 2)), here = load<i32>(EV_J + (<usize> at << 2));
    if (!eventBefore(here, c, k)) return;
    store<i32>(EV_J + (<usize> at << 2), c);
    store<i32>(EV_J + (<usize> child << 2), here);
    at = child;
  }
}

/**
 * L̂ and its gradient on V's columns 0, 1 by rays with the step's pre-activation noise in PRE
 * (pq_model.ts raysPreactLossAndGradient): one sweep per ray over its examples sorted by α and
 * its units sorted by the α at which they toggle; O(N + m_q log m_q).
 */
function raysPreactLoss(r: i32, set: i32): f64 {
  rayOutputs(r);
  const a = A + (<usize> (r * halfP) << 2);
  const b = B + (<usize> (r * halfQ) << 2);
  let cW: f64 = 0, cNone: f64 = 0;
  for (let j = 0; j < halfP; j++) {
    const xi = load<f32>(PRE + (<usize> j << 2));
    if (xi > 0) cW += <f64> load<f32>(a + (<usize> j << 2)) * <f64> xi;
  }
  for (let j = 0; j < halfQ; j++) {
    const xi = load<f32>(PRE + (<usize> (halfP + j) << 2));
    if (xi > 0) cNone += <f64> load<f32>(b + (<usize> j << 2)) * <f64> xi;
  }
  cNone += cW;
  let loss: f64 = 0;
  const inv: f64 = 1.0 / <f64> n;
  for (let i = 0; i < n; i++) {
    if (rayOf(set, i) != RAY_NONE) continue;
    loss += logistic(<f64> load<f32>(Y + (<usize> (set * n + i) << 2)) * cNone);
  }
  memory.fill(GV, 0, <usize> halfQ << 3);
  for (let k = 0; k < 3; k++) {
    const from = load<i32>(RAY_START + (<usize> (set * 4 + k) << 2));
    const count = load<i32>(RAY_START + (<usize> (set * 4 + k + 1) << 2)) - from;
    let slope: f64 = 0, offset: f64 = 0;
    let events = 0;
    for (let j = 0; j < halfQ; j++) {
      const sj = <f64> load<f32>(HRAY + (<usize> (k * halfQ + j) << 2));
      const xi = <f64> load<f32>(PRE + (<usize> (halfP + j) << 2));
      const bj = <f64> load<f32>(b + (<usize> j << 2));
      store<i32>(POS + (<usize> j << 2), count);
      if (sj < 0 || (sj == 0 && xi >= 0)) {
        slope += bj * sj;
        offset += bj * xi;
      }
      if (sj != 0) {
        store<f64>(EV_T + (<usize> j << 3), -xi / sj);
        store<i32>(EV_J + (<usize> events << 2), j);
        events++;
      }
    }
    sortEvents(events, k);
    let e = 0;
    store<f64>(PREFIX, 0);
    for (let m = 0; m < count; m++) {
      const i = load<i32>(RAY_ORDER + (<usize> (set * n + from + m) << 2));
      const alpha = <f64> load<f32>(X2 + (<usize> (set * n + i) << 3));
      for (; e < events; e++) {
        const j = load<i32>(EV_J + (<usize> e << 2));
        const sj = <f64> load<f32>(HRAY + (<usize> (k * halfQ + j) << 2));
        const t = load<f64>(EV_T + (<usize> j << 3));
        if (sj > 0 ? t > alpha : t >= alpha) break;
        const sign: f64 = sj > 0 ? 1 : -1;
        const bj = <f64> load<f32>(b + (<usize> j << 2));
        slope += sign * bj * sj;
        offset += sign * bj * <f64> load<f32>(PRE + (<usize> (halfP + j) << 2));
        store<i32>(POS + (<usize> j << 2), m);
      }
      const y = <f64> load<f32>(Y + (<usize> (set * n + i) << 2));
      const z = y * (cW + alpha * slope + offset);
      const ez = Math.exp(-Math.abs(z));
      loss += (z > 0 ? 0 : -z) + Math.log1p(ez);
      const c = (z > 0 ? -ez / (1 + ez) : -1 / (1 + ez)) * y * alpha * inv;
      store<f64>(PREFIX + (<usize> (m + 1) << 3), load<f64>(PREFIX + (<usize> m << 3)) + c);
    }
    const total = load<f64>(PREFIX + (<usize> count << 3));
    const zeta: f64 = k == 0 ? 0 : k == 1 ? <f64> rayR : -(<f64> rayR);
    for (let j = 0; j < halfQ; j++) {
      const sj = load<f32>(HRAY + (<usize> (k * halfQ + j) << 2));
      const at = load<i32>(POS + (<usize> j << 2));
      const before = load<f64>(PREFIX + (<usize> at << 3));
      const xi = load<f32>(PRE + (<usize> (halfP + j) << 2));
      const active: f64 = sj > 0 ? total - before : sj < 0 ? before : xi >= 0 ? total : 0;
      const s = <f64> load<f32>(b + (<usize> j << 2)) * active;
      const g = GV + (<usize> j << 3);
      store<f32>(g, <f32> (<f64> load<f32>(g) + s));
      store<f32>(g, <f32> (<f64> load<f32>(g, 4) + s * zeta), 4);
    }
  }
  return loss * inv;
}

/** Full-batch gradient of L̂ into GW, GV; returns L̂ (float64 sum of float32 outputs). */
function fullBatchGradient(r: i32, set: i32, pre: bool): f64 {
  // Pre-activation noise breaks positive homogeneity: a sweep along each ray instead.
  if (rays) return pre ? raysPreactLoss(r, set) : raysLoss(r, set, true);
  // With x1 = 0 nothing writes GW: it stays zero.
  if (!x1Zero) memory.fill(GW, 0, <usize> (halfP * dp) << 2);
  memory.fill(GV, 0, <usize> halfQ << 3);
  let loss: f64 = 0;
  const inv: f64 = 1.0 / <f64> n;
  for (let i = 0; i < n; i++) {
    const y = <f64> load<f32>(Y + (<usize> (set * n + i) << 2));
    const z = y * <f64> forward(r, set, i, pre);
    loss += logistic(z);
    addGradient(r, set, i, <f32> (logisticDeriv(z) * y * inv), GW, GV, 8);
  }
  return loss * inv;
}

/** Clean training loss (no pre-activation noise), for the loss-threshold anneal of SGD. */
function cleanLoss(r: i32, set: i32): f64 {
  if (rays) return raysLoss(r, set, false);
  let loss: f64 = 0;
  for (let i = 0; i < n; i++) {
    const y = <f64> load<f32>(Y + (<usize> (set * n + i) << 2));
    loss += logistic(y * <f64> forward(r, set, i, false));
  }
  return loss / <f64> n;
}

/** Stores the clean activation pattern of replica r on its training set (pq_model.ts layout). */
function storePattern(r: i32, set: i32): void {
  const stride = <usize> (halfP + halfQ);
  const base = PATTERN + <usize> r * <usize> n * stride;
  if (rays) {
    // By rays (pq_model.ts rayPattern): every row of a ray is the ray's.
    rayOutputs(r);
    for (let i = 0; i < n; i++) {
      const sub = load<i32>(SUB + (<usize> (set * n + i) << 2));
      const k = rayOf(set, i);
      const p = base + <usize> i * stride;
      for (let j = 0; j < halfP; j++) store<u8>(p + <usize> j, sub != SUBSET_Q_ONLY ? 1 : 0);
      for (let j = 0; j < halfQ; j++) {
        const on = sub != SUBSET_P_ONLY &&
          (k == RAY_NONE || load<f32>(HRAY + (<usize> (k * halfQ + j) << 2)) >= 0);
        store<u8>(p + <usize> (halfP + j), on ? 1 : 0);
      }
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const sub = load<i32>(SUB + (<usize> (set * n + i) << 2));
    forward(r, set, i, false);
    const p = base + <usize> i * stride;
    for (let j = 0; j < halfP; j++) {
      const hw = sub != SUBSET_Q_ONLY && load<f32>(HW + (<usize> j << 2)) >= 0;
      store<u8>(p + <usize> j, hw ? 1 : 0);
    }
    for (let j = 0; j < halfQ; j++) {
      const hv = sub != SUBSET_P_ONLY && load<f32>(HV + (<usize> j << 2)) >= 0;
      store<u8>(p + <usize> (halfP + j), hv ? 1 : 0);
    }
  }
}

function stateRow(r: i32): usize {
  return STATE + (<usize> r << 6);
}

function hyper(r: i32, offset: usize): f64 {
  return load<f64>(HYPER + (<usize> r << 6) + offset);
}

function annealedAt(r: i32): f64 {
  return load<f64>(stateRow(r), S_ANNEALED_AT);
}

/** Marks replica r annealed at step t (loss = the checked loss) and stores its pattern. */
function anneal(r: i32, set: i32, t: i64, loss: f64): void {
  const s = stateRow(r);
  store<f64>(s, <f64> t, S_ANNEALED_AT);
  store<f64>(s, loss, S_ANNEAL_LOSS);
  storePattern(r, set);
  // The weights of the anneal step, for the host's metrics at the anneal (pq_anneal.ts).
  const rowBytes = <usize> dp << 2;
  const bytesW = <usize> halfP * rowBytes, bytesV = <usize> halfQ * rowBytes;
  const at = AT_ANNEAL + <usize> r * (bytesW + bytesV);
  memory.copy(at, W + <usize> r * bytesW, bytesW);
  memory.copy(at + bytesW, V + <usize> r * bytesV, bytesV);
}

/**
 * U ← (1 − γλ)U − γ(G + τ_ξ ξ) on both blocks (G of V only in columns 0, 1); returns false
 * if a new weight is not finite.
 */
function noisyDecayUpdate(r: i32, t: u32, gamma: f32): bool {
  const decay = <f32> (1 - <f64> gamma * hyper(r, H_LAMBDA));
  const tauXi = <f32> hyper(r, H_TAU_XI);
  const rowBytes = <usize> dp << 2;
  let probe = f32x4.splat(0);
  if (plane) {
    // The Q plane alone: V's columns 0, 1 with the draws j·d, j·d + 1 of the full update.
    const v = V + <usize> (r * halfQ) * rowBytes;
    for (let j = 0; j < halfQ; j++) {
      const row = v + <usize> j * rowBytes, g = GV + (<usize> j << 3);
      for (let k = 0; k < 2; k++) {
        const xi = normalAt(seed, firstReplica + <u32> r, t, STREAM_XI_V, <u32> (j * d + k));
        const p = row + (<usize> k << 2);
        const vn = decay * load<f32>(p) - gamma * (load<f32>(g + (<usize> k << 2)) + tauXi * xi);
        store<f32>(p, vn);
        probe = f32x4.add(probe, f32x4.splat(vn - vn));
      }
    }
    return !v128.any_true(f32x4.ne(probe, probe));
  }
  for (let block = 0; block < 2; block++) {
    const rows = block == 0 ? halfP : halfQ;
    const M = (block == 0 ? W : V) + <usize> (r * rows) * rowBytes;
    fillNormals(
      seed,
      firstReplica + <u32> r,
      t,
      block == 0 ? STREAM_XI_W : STREAM_XI_V,
      rows * d,
      NOISE,
    );
    for (let j = 0; j < rows; j++) {
      const row = M + <usize> j * rowBytes;
      const noise = NOISE + <usize> (j * d) * 4;
      if (block == 0) {
        const g = GW + <usize> j * rowBytes;
        const dv = f32x4.splat(decay), gv = f32x4.splat(gamma), tv = f32x4.splat(tauXi);
        // The noise part: W̃ ← (1 − γλ)W̃ − γ(τ_ξ ξ), the same draws without the gradient.
        const wn = WN + <usize> (r * halfP + j) * rowBytes;
        for (let k = 0; k < d; k++) {
          const p = wn + (<usize> k << 2);
          store<f32>(
            p,
            decay * load<f32>(p) - gamma * (tauXi * load<f32>(noise + (<usize> k << 2))),
          );
        }
        let k: usize = 0;
        // Whole vectors of real columns; the noise rows are unpadded, so read them unaligned.
        for (; k + 16 <= (<usize> d << 2); k += 16) {
          const upd = madd(tv, v128.load(noise + k), v128.load(g + k));
          const wn = nmadd(gv, upd, f32x4.mul(dv, v128.load(row + k)));
          v128.store(row + k, wn);
          probe = f32x4.add(probe, f32x4.sub(wn, wn));
        }
        for (; k < (<usize> d << 2); k += 4) {
          const wn = decay * load<f32>(row + k) -
            gamma * (load<f32>(g + k) + tauXi * load<f32>(noise + k));
          store<f32>(row + k, wn);
          probe = f32x4.add(probe, f32x4.splat(wn - wn));
        }
      } else {
        const g = GV + (<usize> j << 3);
        for (let k = 0; k < d; k++) {
          const gk: f32 = k < 2 ? load<f32>(g + (<usize> k << 2)) : 0;
          const p = row + (<usize> k << 2);
          const vn = decay * load<f32>(p) -
            gamma * (gk + tauXi * load<f32>(noise + (<usize> k << 2)));
          store<f32>(p, vn);
          probe = f32x4.add(probe, f32x4.splat(vn - vn));
        }
      }
    }
  }
  return !v128.any_true(f32x4.ne(probe, probe));
}

/** U ← U − γG (full-batch GD without noise or decay); false if a new weight is not finite. */
function plainUpdate(r: i32, gamma: f32): bool {
  const rowBytes = <usize> dp << 2;
  const w = W + <usize> (r * halfP) * rowBytes;
  const v = V + <usize> (r * halfQ) * rowBytes;
  const gv = f32x4.splat(gamma);
  let probe = f32x4.splat(0);
  // On the Q plane W has no gradient and never moves.
  const rowsW = plane ? 0 : halfP;
  for (let j = 0; j < rowsW; j++) {
    const row = w + <usize> j * rowBytes, g = GW + <usize> j * rowBytes;
    for (let k: usize = 0; k < rowBytes; k += 16) {
      const wn = nmadd(gv, v128.load(g + k), v128.load(row + k));
      v128.store(row + k, wn);
      probe = f32x4.add(probe, f32x4.sub(wn, wn));
    }
  }
  for (let j = 0; j < halfQ; j++) {
    const vr = v + <usize> j * rowBytes, q = GV + (<usize> j << 3);
    const v0 = load<f32>(vr) - gamma * load<f32>(q);
    const v1 = load<f32>(vr, 4) - gamma * load<f32>(q, 4);
    store<f32>(vr, v0);
    store<f32>(vr, v1, 4);
    probe = f32x4.add(probe, f32x4.splat(v0 - v0 + v1 - v1));
  }
  return !v128.any_true(f32x4.ne(probe, probe));
}

function isAnnealing(): bool {
  return algo == ALGO_LARGE_THEN_SMALL || algo == ALGO_LNSGD_LS || algo == ALGO_FBGD_LS;
}

/** Step at which algorithms without an anneal store their reference pattern. */
function patternStep(): i64 {
  return algo == ALGO_SMALL_PREACT ? noiseOffStep : annealStep;
}

/** Update t of replica r; false if it produced a non-finite value. */
function stepReplica(r: i32, t: i64): bool {
  const set = sets == 1 ? 0 : r;
  const tu = <u32> t;
  const fullBatch = algo != ALGO_LNSGD_LS && algo != ALGO_LNSGD_S;
  let batchLoss: f64 = 0;
  if (fullBatch) {
    const pre = algo == ALGO_SMALL_PREACT && t < noiseOffStep;
    if (pre) {
      fillNormals(seed, firstReplica + <u32> r, tu, STREAM_PREACT, halfP + halfQ, PRE);
      const tau = <f32> hyper(r, H_TAU_PRE);
      for (let j = 0; j < halfP + halfQ; j++) {
        const p = PRE + (<usize> j << 2);
        store<f32>(p, load<f32>(p) * tau);
      }
    }
    batchLoss = fullBatchGradient(r, set, pre);
    if (!isFinite(batchLoss)) return false;
  }
  if (isAnnealing()) {
    if (annealedAt(r) < 0) {
      if (!annealByLoss) {
        if (t == annealStep) anneal(r, set, t, NaN);
      } else if (t % (fullBatch ? 1 : checkEvery) == 0) {
        const loss = fullBatch ? batchLoss : cleanLoss(r, set);
        if (loss <= hyper(r, H_THRESHOLD)) anneal(r, set, t, loss);
      }
    }
  } else if (t == patternStep()) {
    storePattern(r, set);
  }
  // The stopping rule, after the anneal check and on the clean loss: a stopped replica keeps U_t.
  const stopAt = hyper(r, H_STOP);
  if (stopAt >= 0 && (!isAnnealing() || annealedAt(r) >= 0)) {
    const pre = algo == ALGO_SMALL_PREACT && t < noiseOffStep;
    if (t % (fullBatch ? 1 : checkEvery) == 0) {
      const loss = fullBatch && !pre ? batchLoss : cleanLoss(r, set);
      if (loss <= stopAt) {
        store<f64>(stateRow(r), <f64> t, S_STOPPED_AT);
        store<f64>(stateRow(r), loss, S_STOP_LOSS);
        return true;
      }
    }
  }
  const annealed = annealedAt(r) >= 0;
  const lr64 = isAnnealing() && !annealed ? hyper(r, H_ETA1) : hyper(r, H_ETA2);
  store<f64>(stateRow(r), lr64, S_LR);
  const lr = <f32> lr64;
  if (algo <= ALGO_SMALL_PREACT) return noisyDecayUpdate(r, tu, lr);
  if (algo == ALGO_FBGD_LS) return plainUpdate(r, lr);
  // Label-noise SGD: one example, label times σ (−1 with probability δ).
  philoxBlock(seed, firstReplica + <u32> r, tu, STREAM_SGD, 0);
  const i = <i32> uniformIndex(w0, <u32> n);
  const sigma: f64 = <f64> uniform24(w1) < hyper(r, H_DELTA) ? -1 : 1;
  const y = sigma * <f64> load<f32>(Y + (<usize> (set * n + i) << 2));
  const f = forward(r, set, i, false);
  const c = -lr64 * logisticDeriv(y * <f64> f) * y;
  if (!isFinite(c) || !isFinite(f)) return false;
  const rowBytes = <usize> dp << 2;
  addGradient(
    r,
    set,
    i,
    <f32> c,
    W + <usize> (r * halfP) * rowBytes,
    V + <usize> (r * halfQ) * rowBytes,
    rowBytes,
  );
  // The noise part (App. D.1): W̃ ← W̃ − α ε y ∇_W f, clean y, ε = −δ kept / 1 − δ flipped.
  // V's share goes to the GV scratch, which SGD does not use.
  const delta = hyper(r, H_DELTA);
  const eps = sigma > 0 ? -delta : 1 - delta;
  const yClean = <f64> load<f32>(Y + (<usize> (set * n + i) << 2));
  addGradient(r, set, i, <f32> (-lr64 * eps * yClean), WN + <usize> (r * halfP) * rowBytes, GV, 8);
  return true;
}

/**
 * Advances every live replica from step `from` by `count` steps. A replica whose update t
 * produces a non-finite value is frozen with diverged = t + 1.
 */
export function advance(fromF: f64, count: i32): void {
  const from = <i64> fromF;
  const end = from + <i64> count;
  for (let r = 0; r < replicas; r++) {
    const s = stateRow(r);
    if (load<f64>(s, S_DIVERGED) >= 0) continue;
    for (let t = from; t < end; t++) {
      if (load<f64>(s, S_STOPPED_AT) >= 0) break;
      if (!stepReplica(r, t)) {
        store<f64>(s, <f64> (t + 1), S_DIVERGED);
        break;
      }
    }
  }
}
