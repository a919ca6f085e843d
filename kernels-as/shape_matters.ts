// @ts-nocheck: AssemblyScript source (i32, f32, v128, f32x4, load<T>): asc type-checks it.
/**
 * Shape Matters kernel (server/experiments/shape_matters.ts): advances R replicas of
 * f_v(x) = <v⊙v, x> by many steps per call, float32 state, f32x4 SIMD matvecs.
 *
 * One step of replica r from step t, all from the old v (simultaneous update):
 *   u = v⊙v;  r_i = <u, x_i> − y_i;  c_i = r_i / n  (+ noise folded into c, below)
 *   G = Xᵀc;  v ← v − lr·(v⊙G + ζ·z)
 * ∇L = (1/n)Σ r_i x_i⊙v = v⊙Xᵀ(r/n), and the noise terms of label noise (−δ s v⊙x_i) and
 * mini-batch noise (δ(r_i x_i − r_j x_j)⊙v) are also v⊙(multiple of a data row), so they are
 * folded into c: c_i −= δs, resp. c_i += δ r_i, c_j −= δ r_j. Gaussian noise has ζ = σ and
 * Langevin ζ = −sqrt(2/(lr λ)); both draw z from Philox stream 1 as the reference does.
 *
 * Layout (the host fills it through the pointer getters after setup()): d is padded to
 * dp = 4⌈d/4⌉ with zero columns so every row is whole f32x4 vectors; padding columns of v
 * stay 0 because their data, u and z are 0. Replicas run one after another over the whole
 * call (replica-outer), so one replica's v, residuals and data stay in L1 for all its steps.
 * Metrics are evaluated in float64 from the float32 state at snapshot steps into `out`
 * ([snapshot][metric][replica] float32); a replica that turns non-finite is frozen, its
 * divergence step is recorded, and its metrics read NaN from then on.
 */
import {
  boxMuller,
  fillNormals,
  philoxBlock,
  rademacher,
  uniformIndex,
  w0,
  w1,
  w2,
  w3,
  z0,
} from "./philox.ts";
import { dot, dot4 } from "./simd.ts";
import { allocZeroed } from "./memory.ts";

// Codes of ALGO_CODE in server/experiments/shape_matters.ts; gd (0) needs no branch.
const ALGO_LABEL = 1;
const ALGO_MINIBATCH = 2;
const ALGO_GAUSSIAN = 3;
const ALGO_LANGEVIN = 4;
const STREAM_INDEX: u32 = 0;
const STREAM_NORMAL: u32 = 1;
const SUPPORT_THRESHOLD: f64 = 0.01;
export const METRIC_COUNT = 4;

let d = 0;
let dp = 0;
let n = 0;
let replicas = 0;
let sets = 1;
let algo = 0;
let rademacherNoise = false;
let seed: u32 = 0;

let X: usize = 0; // [sets][n][dp] f32
let Y: usize = 0; // [sets][n] f32
let VSTAR: usize = 0; // [dp] f32: v*⊙v*
let V: usize = 0; // [R][dp] f32: the state
let HYPER: usize = 0; // [R][4] f64: lr, delta, sigma, lambda (host-written)
let COEF: usize = 0; // [R][4] f32: lr·factor, delta, ζ, unused (per schedule segment)
let DIVERGED: usize = 0; // [R] f64: step at which the state became non-finite, or -1
let C: usize = 0; // [n rounded to 4] f32: residual coefficients c of the current step
let Z: usize = 0; // [dp] f32: normals of the current step (padding stays 0)
let U: usize = 0; // [dp] f32: u = v⊙v of the current step

/** Allocates every buffer; call once per instance before filling data and hyper-parameters. */
export function setup(
  dIn: i32,
  nIn: i32,
  replicasIn: i32,
  setsIn: i32,
  algoIn: i32,
  rademacherIn: i32,
  seedIn: u32,
): void {
  d = dIn;
  dp = (dIn + 3) & ~3;
  n = nIn;
  replicas = replicasIn;
  sets = setsIn;
  algo = algoIn;
  rademacherNoise = rademacherIn != 0;
  seed = seedIn;
  X = allocZeroed(sets * n * dp * 4);
  Y = allocZeroed(sets * n * 4);
  VSTAR = allocZeroed(dp * 4);
  V = allocZeroed(replicas * dp * 4);
  HYPER = allocZeroed(replicas * 32);
  COEF = allocZeroed(replicas * 16);
  DIVERGED = allocZeroed(replicas * 8);
  C = allocZeroed(((n + 3) & ~3) * 4);
  Z = allocZeroed(dp * 4);
  U = allocZeroed(dp * 4);
}

export function paddedDim(): i32 {
  return dp;
}
export function xPtr(): usize {
  return X;
}
export function yPtr(): usize {
  return Y;
}
export function vStarSqPtr(): usize {
  return VSTAR;
}
export function vPtr(): usize {
  return V;
}
export function hyperPtr(): usize {
  return HYPER;
}
export function divergedPtr(): usize {
  return DIVERGED;
}

/** Scratch memory for the host (metrics and frame read-back). */
export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}

/** v = tau·1 on the d real coordinates of every replica; nobody diverged. */
export function resetState(tau: f64): void {
  const t = <f32> tau;
  for (let r = 0; r < replicas; r++) {
    const v = V + <usize> (r * dp) * 4;
    for (let k = 0; k < d; k++) store<f32>(v + (<usize> k << 2), t);
    store<f64>(DIVERGED + (<usize> r << 3), -1);
  }
}

/**
 * Per-replica float32 coefficients for a schedule segment with LR factor `factor`: computed
 * in float64 as the reference does (lr = lr_r·factor, ζ = −sqrt(2/(lr·λ))), then rounded.
 */
export function setSegment(factor: f64): void {
  for (let r = 0; r < replicas; r++) {
    const h = HYPER + (<usize> r << 5);
    const c = COEF + (<usize> r << 4);
    const lr = load<f64>(h) * factor;
    let zeta: f64 = 0;
    if (algo == ALGO_GAUSSIAN) zeta = load<f64>(h, 16);
    else if (algo == ALGO_LANGEVIN) zeta = -Math.sqrt(2 / (lr * load<f64>(h, 24)));
    store<f32>(c, <f32> lr);
    store<f32>(c, <f32> load<f64>(h, 8), 4);
    store<f32>(c, <f32> zeta, 8);
  }
}

/**
 * c_i = <u, x_i> − y_i for all i into C (raw residuals; scaled later). Four rows at a time
 * so four independent accumulators hide the add latency and each u vector is loaded once.
 */
function residuals(x: usize, y: usize): void {
  const rowBytes = <usize> dp << 2;
  const dBytes = rowBytes;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const off = <usize> i << 2;
    const dots = dot4(x + <usize> i * rowBytes, rowBytes, U, dBytes);
    v128.store(C + off, f32x4.sub(dots, v128.load(y + off)));
  }
  for (; i < n; i++) {
    const off = <usize> i << 2;
    store<f32>(C + off, dot(x + <usize> i * rowBytes, U, dBytes) - load<f32>(y + off));
  }
}

/**
 * G = Xᵀc on four vectors (16 coordinates) at a time, fused with the update of those
 * coordinates; returns the running non-finite probe acc + (v' − v'), which stays 0 unless
 * some new v' is NaN or ±Inf. Safe in place: G depends on c (old state) and v_k only.
 */
function gradientUpdate(x: usize, lr: f32, zeta: f32, withZ: bool, v: usize): v128 {
  const rowBytes = <usize> dp << 2;
  const lrv = f32x4.splat(lr);
  const zv = f32x4.splat(zeta);
  let probe = f32x4.splat(0);
  let k: usize = 0;
  for (; k + 64 <= rowBytes; k += 64) {
    let g0 = f32x4.splat(0);
    let g1 = f32x4.splat(0);
    let g2 = f32x4.splat(0);
    let g3 = f32x4.splat(0);
    let p = x + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const ci = v128.load_splat<f32>(C + (<usize> i << 2));
      g0 = f32x4.add(g0, f32x4.mul(ci, v128.load(p)));
      g1 = f32x4.add(g1, f32x4.mul(ci, v128.load(p, 16)));
      g2 = f32x4.add(g2, f32x4.mul(ci, v128.load(p, 32)));
      g3 = f32x4.add(g3, f32x4.mul(ci, v128.load(p, 48)));
    }
    probe = f32x4.add(probe, updateChunk(v + k, g0, lrv, zv, withZ, Z + k));
    probe = f32x4.add(probe, updateChunk(v + k + 16, g1, lrv, zv, withZ, Z + k + 16));
    probe = f32x4.add(probe, updateChunk(v + k + 32, g2, lrv, zv, withZ, Z + k + 32));
    probe = f32x4.add(probe, updateChunk(v + k + 48, g3, lrv, zv, withZ, Z + k + 48));
  }
  for (; k < rowBytes; k += 16) {
    let g = f32x4.splat(0);
    let p = x + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      g = f32x4.add(g, f32x4.mul(v128.load_splat<f32>(C + (<usize> i << 2)), v128.load(p)));
    }
    probe = f32x4.add(probe, updateChunk(v + k, g, lrv, zv, withZ, Z + k));
  }
  return probe;
}

/** v ← v − lr·(v⊙G + ζz) on one vector; returns v' − v' (0, or NaN if v' is not finite). */
function updateChunk(vp: usize, g: v128, lrv: v128, zv: v128, withZ: bool, zp: usize): v128 {
  const vk = v128.load(vp);
  let upd = f32x4.mul(vk, g);
  if (withZ) upd = f32x4.add(upd, f32x4.mul(zv, v128.load(zp)));
  const vn = f32x4.sub(vk, f32x4.mul(lrv, upd));
  v128.store(vp, vn);
  return f32x4.sub(vn, vn);
}

/** One update of replica r from step t; false if the new state is not finite. */
function stepReplica(r: i32, t: u32): bool {
  const v = V + <usize> (r * dp) * 4;
  const set = sets == 1 ? 0 : r;
  const x = X + <usize> (set * n) * <usize> (dp * 4);
  const y = Y + <usize> (set * n) * 4;
  const coef = COEF + (<usize> r << 4);
  const lr = load<f32>(coef);
  const dpBytes = <usize> dp << 2;
  for (let k: usize = 0; k < dpBytes; k += 16) {
    const vk = v128.load(v + k);
    v128.store(U + k, f32x4.mul(vk, vk));
  }
  residuals(x, y);
  // Draws first (they need the raw residuals for mini-batch noise), then c = r / n + noise.
  let i: i32 = -1;
  let j: i32 = -1;
  let ci: f32 = 0;
  let cj: f32 = 0;
  if (algo == ALGO_LABEL || algo == ALGO_MINIBATCH) {
    philoxBlock(seed, <u32> r, t, STREAM_INDEX, 0);
    i = <i32> uniformIndex(w0, <u32> n);
    const delta = load<f32>(coef, 4);
    if (algo == ALGO_LABEL) {
      let s: f32;
      if (rademacherNoise) s = rademacher(w2);
      else {
        boxMuller(w2, w3);
        s = z0;
      }
      ci = -delta * s;
    } else {
      j = <i32> uniformIndex(w1, <u32> n);
      if (i == j) {
        // ∇ℓ_i − ∇ℓ_i = 0 exactly, as in the reference: no noise this step.
        i = -1;
        j = -1;
      } else {
        ci = delta * load<f32>(C + (<usize> i << 2));
        cj = -delta * load<f32>(C + (<usize> j << 2));
      }
    }
  }
  const nf = <f32> n;
  for (let k = 0; k < n; k++) {
    const p = C + (<usize> k << 2);
    store<f32>(p, load<f32>(p) / nf);
  }
  if (i >= 0) store<f32>(C + (<usize> i << 2), load<f32>(C + (<usize> i << 2)) + ci);
  if (j >= 0) store<f32>(C + (<usize> j << 2), load<f32>(C + (<usize> j << 2)) + cj);
  const withZ = algo == ALGO_GAUSSIAN || algo == ALGO_LANGEVIN;
  if (withZ) fillNormals(seed, <u32> r, t, STREAM_NORMAL, d, Z);
  const probe = gradientUpdate(x, lr, load<f32>(coef, 8), withZ, v);
  return !v128.any_true(f32x4.ne(probe, probe));
}

/**
 * Metrics of replica r's current state in float64 into out[(snap·4 + m)·R + r]:
 * train_loss = (1/n)Σ¼r_i², test_error = ‖v⊙v − v*⊙v*‖², v_norm = ‖v‖, support_size.
 * The float32 state squared is exact in float64, so only the state itself is float32.
 */
function writeMetrics(r: i32, out: usize, snap: i32): void {
  const v = V + <usize> (r * dp) * 4;
  const set = sets == 1 ? 0 : r;
  const x = X + <usize> (set * n) * <usize> (dp * 4);
  const y = Y + <usize> (set * n) * 4;
  let loss: f64 = 0;
  for (let i = 0; i < n; i++) {
    const row = x + <usize> (i * dp) * 4;
    let f: f64 = 0;
    for (let k = 0; k < d; k++) {
      const vk = <f64> load<f32>(v + (<usize> k << 2));
      f += vk * vk * <f64> load<f32>(row + (<usize> k << 2));
    }
    const res = f - <f64> load<f32>(y + (<usize> i << 2));
    loss += 0.25 * res * res;
  }
  let testErr: f64 = 0;
  let norm2: f64 = 0;
  let support = 0;
  for (let k = 0; k < d; k++) {
    const vk = <f64> load<f32>(v + (<usize> k << 2));
    const u = vk * vk;
    const e = u - <f64> load<f32>(VSTAR + (<usize> k << 2));
    testErr += e * e;
    norm2 += u;
    if (u > SUPPORT_THRESHOLD) support++;
  }
  writeRow(out, snap, r, <f32> (loss / n), <f32> testErr, <f32> Math.sqrt(norm2), <f32> support);
}

function writeRow(out: usize, snap: i32, r: i32, a: f32, b: f32, c: f32, e: f32): void {
  const stride = <usize> replicas << 2;
  const p = out + <usize> (snap * METRIC_COUNT) * stride + (<usize> r << 2);
  store<f32>(p, a);
  store<f32>(p + stride, b);
  store<f32>(p + 2 * stride, c);
  store<f32>(p + 3 * stride, e);
}

function isDiverged(r: i32): bool {
  return load<f64>(DIVERGED + (<usize> r << 3)) >= 0;
}

/** Metrics of every replica's current state as snapshot 0 of `out` (NaN if diverged). */
export function metricsNow(out: usize): void {
  for (let r = 0; r < replicas; r++) {
    if (isDiverged(r)) writeRow(out, 0, r, NaN, NaN, NaN, NaN);
    else writeMetrics(r, out, 0);
  }
}

/** First snapshot step after s: min(total, (⌊s/every⌋ + 1)·every), as snapshots.ts. */
function nextSnapshot(s: i64, every: i64, total: i64): i64 {
  const next = (s / every + 1) * every;
  return next < total ? next : total;
}

/**
 * Advances every live replica from step `from` by `count` steps with the coefficients of the
 * last setSegment() (the host splits calls at schedule milestones). Writes the metrics of
 * each snapshot step in (from, from + count] to out in order; returns how many there were.
 * Steps are passed as f64 (exact to 2^53) because runs may exceed 2^32 steps; Philox sees
 * the step modulo 2^32, as the TS's `>>> 0` does.
 */
export function advance(fromF: f64, count: i32, everyF: f64, totalF: f64, out: usize): i32 {
  const from = <i64> fromF;
  const every = <i64> everyF;
  const total = <i64> totalF;
  const end = from + <i64> count;
  let snaps = 0;
  for (let s = nextSnapshot(from, every, total); s <= end; s = nextSnapshot(s, every, total)) {
    snaps++;
    if (s >= total) break;
  }
  for (let r = 0; r < replicas; r++) {
    let snap = 0;
    if (!isDiverged(r)) {
      let next = nextSnapshot(from, every, total);
      for (let s = from; s < end;) {
        const ok = stepReplica(r, <u32> s);
        s++;
        if (!ok) {
          store<f64>(DIVERGED + (<usize> r << 3), <f64> s);
          break;
        }
        if (s == next) {
          writeMetrics(r, out, snap++);
          next = nextSnapshot(s, every, total);
        }
      }
    }
    for (; snap < snaps; snap++) writeRow(out, snap, r, NaN, NaN, NaN, NaN);
  }
  return snaps;
}

/** v⊙v of every replica, unpadded, into out[r·d + k] (the "v_sq" frame). */
export function writeVSquared(out: usize): void {
  for (let r = 0; r < replicas; r++) {
    const v = V + <usize> (r * dp) * 4;
    const o = out + <usize> (r * d) * 4;
    for (let k = 0; k < d; k++) {
      const vk = load<f32>(v + (<usize> k << 2));
      store<f32>(o + (<usize> k << 2), vk * vk);
    }
  }
}
