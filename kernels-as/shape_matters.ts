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
import { dot, dot4, dot8, hsum, madd, nmadd } from "./simd.ts";
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
/** Global index of replica 0 when this run is a shard of a larger one (RunSpec.firstReplica). */
let firstReplica: u32 = 0;

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
// Scratch of the replica-blocked path (BLOCK replicas on shared data stepped together):
let UB: usize = 0; // [BLOCK][dp] f32: u of each replica of the block
let CB: usize = 0; // [BLOCK][n rounded to 4] f32: c of each replica of the block
let ZB: usize = 0; // [BLOCK][dp] f32: normals of each replica of the block
let USQ: usize = 0; // [dp] f64: v⊙v of the replica whose metrics are being written
/** [d][BLOCK] f64: v⊙v of a block's four replicas for writeMetricsBlock (k-major, replica lanes). */
let USQB: usize = 0;
/** [sets][d][n rounded to 2] f64: X transposed for the metrics (prepareMetrics), or 0. */
let XT: usize = 0;
let FSUM: usize = 0; // [n rounded to 2] f64: the metrics' residual sums Σ_k u_k·x_ik
let nEven = 0;
/** XT is made only up to this size; larger data sets take the metrics' scalar path. */
const XT_MAX_BYTES: usize = 64 << 20;
/** Replicas stepped together by the blocked path. */
const BLOCK = 4;
/** 0 forces the one-replica path everywhere (the blocked kernel's test compares the two). */
let blocking = true;
/** 0 makes the blocked path write each replica's metrics alone (the metrics' test compares). */
let blockMetrics = true;

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
  UB = allocZeroed(BLOCK * dp * 4);
  CB = allocZeroed(BLOCK * ((n + 3) & ~3) * 4);
  ZB = allocZeroed(BLOCK * dp * 4);
  USQ = allocZeroed(dp * 8);
  USQB = allocZeroed(dp * BLOCK * 8);
  XT = 0;
  nEven = (n + 1) & ~1;
}

/** Replica r draws its noise with Philox key (seed, first + r); call after setup (default 0). */
export function setFirstReplica(first: u32): void {
  firstReplica = first;
}

/** Turns the replica-blocked path on (default) or off; both give the same numbers. */
export function setBlocking(on: i32): void {
  blocking = on != 0;
}

/** Turns writeMetricsBlock on (default) or off (writeMetrics per replica); same numbers. */
export function setBlockMetrics(on: i32): void {
  blockMetrics = on != 0;
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

/**
 * Called by the host once X is written: X transposed to float64 (exact), so that the metrics'
 * residuals load two rows' x_ik as one f64x2. Without it (or for a data set over
 * XT_MAX_BYTES) the metrics convert x row by row; the numbers are the same either way.
 */
export function prepareMetrics(): void {
  const bytes = <usize> sets * <usize> d * <usize> nEven * 8;
  if (bytes > XT_MAX_BYTES) {
    XT = 0;
    return;
  }
  if (XT == 0) {
    XT = allocZeroed(bytes);
    FSUM = allocZeroed(<usize> nEven * 8);
  }
  for (let set = 0; set < sets; set++) {
    for (let i = 0; i < n; i++) {
      const row = X + <usize> ((set * n + i) * dp) * 4;
      for (let k = 0; k < d; k++) {
        const at = XT + (<usize> ((set * d + k) * nEven + i) << 3);
        store<f64>(at, <f64> load<f32>(row + (<usize> k << 2)));
      }
    }
  }
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
  for (; i + 8 <= n; i += 8) {
    const off = <usize> i << 2;
    dot8(x + <usize> i * rowBytes, rowBytes, U, dBytes, C + off);
    v128.store(C + off, f32x4.sub(v128.load(C + off), v128.load(y + off)));
    v128.store(C + off, f32x4.sub(v128.load(C + off, 16), v128.load(y + off, 16)), 16);
  }
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
  // Eight vectors per pass: eight independent accumulators cover the multiply-add latency.
  for (; k + 128 <= rowBytes; k += 128) {
    let g0 = f32x4.splat(0), g1 = f32x4.splat(0), g2 = f32x4.splat(0), g3 = f32x4.splat(0);
    let g4 = f32x4.splat(0), g5 = f32x4.splat(0), g6 = f32x4.splat(0), g7 = f32x4.splat(0);
    let p = x + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const ci = v128.load_splat<f32>(C + (<usize> i << 2));
      g0 = madd(ci, v128.load(p), g0);
      g1 = madd(ci, v128.load(p, 16), g1);
      g2 = madd(ci, v128.load(p, 32), g2);
      g3 = madd(ci, v128.load(p, 48), g3);
      g4 = madd(ci, v128.load(p, 64), g4);
      g5 = madd(ci, v128.load(p, 80), g5);
      g6 = madd(ci, v128.load(p, 96), g6);
      g7 = madd(ci, v128.load(p, 112), g7);
    }
    probe = f32x4.add(probe, updateChunk(v + k, g0, lrv, zv, withZ, Z + k));
    probe = f32x4.add(probe, updateChunk(v + k + 16, g1, lrv, zv, withZ, Z + k + 16));
    probe = f32x4.add(probe, updateChunk(v + k + 32, g2, lrv, zv, withZ, Z + k + 32));
    probe = f32x4.add(probe, updateChunk(v + k + 48, g3, lrv, zv, withZ, Z + k + 48));
    probe = f32x4.add(probe, updateChunk(v + k + 64, g4, lrv, zv, withZ, Z + k + 64));
    probe = f32x4.add(probe, updateChunk(v + k + 80, g5, lrv, zv, withZ, Z + k + 80));
    probe = f32x4.add(probe, updateChunk(v + k + 96, g6, lrv, zv, withZ, Z + k + 96));
    probe = f32x4.add(probe, updateChunk(v + k + 112, g7, lrv, zv, withZ, Z + k + 112));
  }
  for (; k + 64 <= rowBytes; k += 64) {
    let g0 = f32x4.splat(0);
    let g1 = f32x4.splat(0);
    let g2 = f32x4.splat(0);
    let g3 = f32x4.splat(0);
    let p = x + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const ci = v128.load_splat<f32>(C + (<usize> i << 2));
      g0 = madd(ci, v128.load(p), g0);
      g1 = madd(ci, v128.load(p, 16), g1);
      g2 = madd(ci, v128.load(p, 32), g2);
      g3 = madd(ci, v128.load(p, 48), g3);
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
      g = madd(v128.load_splat<f32>(C + (<usize> i << 2)), v128.load(p), g);
    }
    probe = f32x4.add(probe, updateChunk(v + k, g, lrv, zv, withZ, Z + k));
  }
  return probe;
}

/** v ← v − lr·(v⊙G + ζz) on one vector; returns v' − v' (0, or NaN if v' is not finite). */
function updateChunk(vp: usize, g: v128, lrv: v128, zv: v128, withZ: bool, zp: usize): v128 {
  const vk = v128.load(vp);
  let upd = f32x4.mul(vk, g);
  if (withZ) upd = madd(zv, v128.load(zp), upd);
  const vn = nmadd(lrv, upd, vk);
  v128.store(vp, vn);
  return f32x4.sub(vn, vn);
}

/**
 * Replica r's raw residuals at cb (from step t's state) into c = r / n + its noise at step t.
 * The draws come first: mini-batch noise needs the raw residuals.
 */
function coefficients(r: i32, t: u32, cb: usize): void {
  const coef = COEF + (<usize> r << 4);
  let i: i32 = -1;
  let j: i32 = -1;
  let ci: f32 = 0;
  let cj: f32 = 0;
  if (algo == ALGO_LABEL || algo == ALGO_MINIBATCH) {
    philoxBlock(seed, firstReplica + <u32> r, t, STREAM_INDEX, 0);
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
        ci = delta * load<f32>(cb + (<usize> i << 2));
        cj = -delta * load<f32>(cb + (<usize> j << 2));
      }
    }
  }
  const nf = <f32> n;
  for (let k = 0; k < n; k++) {
    const p = cb + (<usize> k << 2);
    store<f32>(p, load<f32>(p) / nf);
  }
  if (i >= 0) store<f32>(cb + (<usize> i << 2), load<f32>(cb + (<usize> i << 2)) + ci);
  if (j >= 0) store<f32>(cb + (<usize> j << 2), load<f32>(cb + (<usize> j << 2)) + cj);
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
  coefficients(r, t, C);
  const withZ = algo == ALGO_GAUSSIAN || algo == ALGO_LANGEVIN;
  if (withZ) fillNormals(seed, firstReplica + <u32> r, t, STREAM_NORMAL, d, Z);
  const probe = gradientUpdate(x, lr, load<f32>(coef, 8), withZ, v);
  return !v128.any_true(f32x4.ne(probe, probe));
}

/**
 * The replica-blocked step: BLOCK replicas on shared data from step t together, so each data
 * row loaded from memory serves all of them (the residuals take two rows × four replicas per
 * pass, the gradient two vectors × four replicas). Every replica's sums run over the same
 * terms in the same order as stepReplica's, so the numbers are bit-identical to it. Returns a
 * bit mask of the replicas whose new state is finite.
 */
function stepBlock(r0: i32, t: u32): i32 {
  const dpBytes = <usize> dp << 2;
  const cBytes = <usize> ((n + 3) & ~3) << 2;
  for (let b = 0; b < BLOCK; b++) {
    const v = V + <usize> ((r0 + b) * dp) * 4;
    const u = UB + <usize> b * dpBytes;
    for (let k: usize = 0; k < dpBytes; k += 16) {
      const vk = v128.load(v + k);
      v128.store(u + k, f32x4.mul(vk, vk));
    }
  }
  blockResiduals(X, Y, dpBytes, cBytes);
  const withZ = algo == ALGO_GAUSSIAN || algo == ALGO_LANGEVIN;
  for (let b = 0; b < BLOCK; b++) {
    coefficients(r0 + b, t, CB + <usize> b * cBytes);
    if (withZ) {
      fillNormals(
        seed,
        firstReplica + <u32> (r0 + b),
        t,
        STREAM_NORMAL,
        d,
        ZB + <usize> b * dpBytes,
      );
    }
  }
  return blockGradientUpdate(r0, X, withZ, dpBytes, cBytes);
}

/** c_b,i = <u_b, x_i> − y_i for the block's four replicas b, two rows per pass. */
function blockResiduals(x: usize, y: usize, rowBytes: usize, cBytes: usize): void {
  const u1 = UB + rowBytes, u2 = u1 + rowBytes, u3 = u2 + rowBytes;
  let i = 0;
  for (; i + 2 <= n; i += 2) {
    const p = x + <usize> i * rowBytes;
    const q = p + rowBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let e0 = f32x4.splat(0), e1 = f32x4.splat(0), e2 = f32x4.splat(0), e3 = f32x4.splat(0);
    for (let k: usize = 0; k < rowBytes; k += 16) {
      const xp = v128.load(p + k);
      const xq = v128.load(q + k);
      const v0 = v128.load(UB + k);
      a0 = madd(xp, v0, a0);
      e0 = madd(xq, v0, e0);
      const v1 = v128.load(u1 + k);
      a1 = madd(xp, v1, a1);
      e1 = madd(xq, v1, e1);
      const v2 = v128.load(u2 + k);
      a2 = madd(xp, v2, a2);
      e2 = madd(xq, v2, e2);
      const v3 = v128.load(u3 + k);
      a3 = madd(xp, v3, a3);
      e3 = madd(xq, v3, e3);
    }
    const off = <usize> i << 2;
    const yi = load<f32>(y + off), yj = load<f32>(y + off, 4);
    store<f32>(CB + off, hsum(a0) - yi);
    store<f32>(CB + off, hsum(e0) - yj, 4);
    store<f32>(CB + cBytes + off, hsum(a1) - yi);
    store<f32>(CB + cBytes + off, hsum(e1) - yj, 4);
    store<f32>(CB + 2 * cBytes + off, hsum(a2) - yi);
    store<f32>(CB + 2 * cBytes + off, hsum(e2) - yj, 4);
    store<f32>(CB + 3 * cBytes + off, hsum(a3) - yi);
    store<f32>(CB + 3 * cBytes + off, hsum(e3) - yj, 4);
  }
  for (; i < n; i++) {
    const row = x + <usize> i * rowBytes;
    const off = <usize> i << 2;
    const yi = load<f32>(y + off);
    for (let b = 0; b < BLOCK; b++) {
      const u = UB + <usize> b * rowBytes;
      store<f32>(CB + <usize> b * cBytes + off, dot(row, u, rowBytes) - yi);
    }
  }
}

/**
 * G_b = Xᵀc_b for the block's four replicas, two vectors (8 coordinates) at a time, fused with
 * their updates; returns the mask of replicas whose new state is finite.
 */
function blockGradientUpdate(
  r0: i32,
  x: usize,
  withZ: bool,
  rowBytes: usize,
  cBytes: usize,
): i32 {
  const c1 = CB + cBytes, c2 = c1 + cBytes, c3 = c2 + cBytes;
  let p0 = f32x4.splat(0), p1 = f32x4.splat(0), p2 = f32x4.splat(0), p3 = f32x4.splat(0);
  let k: usize = 0;
  for (; k + 32 <= rowBytes; k += 32) {
    let g0 = f32x4.splat(0), h0 = f32x4.splat(0), g1 = f32x4.splat(0), h1 = f32x4.splat(0);
    let g2 = f32x4.splat(0), h2 = f32x4.splat(0), g3 = f32x4.splat(0), h3 = f32x4.splat(0);
    let p = x + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const xa = v128.load(p);
      const xb = v128.load(p, 16);
      const off = <usize> i << 2;
      const s0 = v128.load_splat<f32>(CB + off);
      g0 = madd(s0, xa, g0);
      h0 = madd(s0, xb, h0);
      const s1 = v128.load_splat<f32>(c1 + off);
      g1 = madd(s1, xa, g1);
      h1 = madd(s1, xb, h1);
      const s2 = v128.load_splat<f32>(c2 + off);
      g2 = madd(s2, xa, g2);
      h2 = madd(s2, xb, h2);
      const s3 = v128.load_splat<f32>(c3 + off);
      g3 = madd(s3, xa, g3);
      h3 = madd(s3, xb, h3);
    }
    p0 = f32x4.add(p0, blockUpdate(r0, 0, k, g0, h0, withZ, rowBytes));
    p1 = f32x4.add(p1, blockUpdate(r0, 1, k, g1, h1, withZ, rowBytes));
    p2 = f32x4.add(p2, blockUpdate(r0, 2, k, g2, h2, withZ, rowBytes));
    p3 = f32x4.add(p3, blockUpdate(r0, 3, k, g3, h3, withZ, rowBytes));
  }
  for (; k < rowBytes; k += 16) {
    let g0 = f32x4.splat(0), g1 = f32x4.splat(0), g2 = f32x4.splat(0), g3 = f32x4.splat(0);
    let p = x + k;
    for (let i = 0; i < n; i++, p += rowBytes) {
      const xa = v128.load(p);
      const off = <usize> i << 2;
      g0 = madd(v128.load_splat<f32>(CB + off), xa, g0);
      g1 = madd(v128.load_splat<f32>(c1 + off), xa, g1);
      g2 = madd(v128.load_splat<f32>(c2 + off), xa, g2);
      g3 = madd(v128.load_splat<f32>(c3 + off), xa, g3);
    }
    p0 = f32x4.add(p0, blockUpdate1(r0, 0, k, g0, withZ, rowBytes));
    p1 = f32x4.add(p1, blockUpdate1(r0, 1, k, g1, withZ, rowBytes));
    p2 = f32x4.add(p2, blockUpdate1(r0, 2, k, g2, withZ, rowBytes));
    p3 = f32x4.add(p3, blockUpdate1(r0, 3, k, g3, withZ, rowBytes));
  }
  return (finite(p0) ? 1 : 0) | (finite(p1) ? 2 : 0) | (finite(p2) ? 4 : 0) |
    (finite(p3) ? 8 : 0);
}

function finite(probe: v128): bool {
  return !v128.any_true(f32x4.ne(probe, probe));
}

/** The update of two vectors (at byte k) of block replica b; returns the NaN probe. */
function blockUpdate(
  r0: i32,
  b: i32,
  k: usize,
  g: v128,
  h: v128,
  withZ: bool,
  dpBytes: usize,
): v128 {
  const coef = COEF + (<usize> (r0 + b) << 4);
  const lrv = f32x4.splat(load<f32>(coef));
  const zv = f32x4.splat(load<f32>(coef, 8));
  const v = V + <usize> (r0 + b) * dpBytes + k;
  const z = ZB + <usize> b * dpBytes + k;
  return f32x4.add(
    updateChunk(v, g, lrv, zv, withZ, z),
    updateChunk(v + 16, h, lrv, zv, withZ, z + 16),
  );
}

/** The update of one vector (at byte k) of block replica b; returns the NaN probe. */
function blockUpdate1(r0: i32, b: i32, k: usize, g: v128, withZ: bool, dpBytes: usize): v128 {
  const coef = COEF + (<usize> (r0 + b) << 4);
  const lrv = f32x4.splat(load<f32>(coef));
  const zv = f32x4.splat(load<f32>(coef, 8));
  const v = V + <usize> (r0 + b) * dpBytes + k;
  return updateChunk(v, g, lrv, zv, withZ, ZB + <usize> b * dpBytes + k);
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
  // u = v⊙v once (a snapshot every step made this pass cost more than the step itself);
  // f = Σ u_k·x_ik is the same product (vk·vk)·x_ik in the same order, so the same bits.
  let testErr: f64 = 0;
  let norm2: f64 = 0;
  let support = 0;
  for (let k = 0; k < d; k++) {
    const vk = <f64> load<f32>(v + (<usize> k << 2));
    const u = vk * vk;
    store<f64>(USQ + (<usize> k << 3), u);
    const e = u - <f64> load<f32>(VSTAR + (<usize> k << 2));
    testErr += e * e;
    norm2 += u;
    if (u > SUPPORT_THRESHOLD) support++;
  }
  let loss: f64 = 0;
  let i = 0;
  if (XT != 0) {
    // Rows in f64x2 lanes, eight at a time in four registers: each lane sums its row in k
    // order as the scalar path does (so the same bits), and the four chains of adds overlap
    // instead of each waiting on the one before.
    const xt = XT + (<usize> (set * d * nEven) << 3);
    const rowBytes = <usize> nEven << 3;
    let j: usize = 0;
    for (; j + 64 <= rowBytes; j += 64) {
      let f0 = f64x2.splat(0);
      let f1 = f64x2.splat(0);
      let f2 = f64x2.splat(0);
      let f3 = f64x2.splat(0);
      let at = xt + j;
      for (let k = 0; k < d; k++, at += rowBytes) {
        const uk = f64x2.splat(load<f64>(USQ + (<usize> k << 3)));
        f0 = f64x2.add(f0, f64x2.mul(uk, v128.load(at)));
        f1 = f64x2.add(f1, f64x2.mul(uk, v128.load(at, 16)));
        f2 = f64x2.add(f2, f64x2.mul(uk, v128.load(at, 32)));
        f3 = f64x2.add(f3, f64x2.mul(uk, v128.load(at, 48)));
      }
      v128.store(FSUM + j, f0);
      v128.store(FSUM + j, f1, 16);
      v128.store(FSUM + j, f2, 32);
      v128.store(FSUM + j, f3, 48);
    }
    for (; j < rowBytes; j += 16) {
      let f = f64x2.splat(0);
      let at = xt + j;
      for (let k = 0; k < d; k++, at += rowBytes) {
        f = f64x2.add(f, f64x2.mul(f64x2.splat(load<f64>(USQ + (<usize> k << 3))), v128.load(at)));
      }
      v128.store(FSUM + j, f);
    }
    for (; i < n; i++) {
      const res = load<f64>(FSUM + (<usize> i << 3)) - <f64> load<f32>(y + (<usize> i << 2));
      loss += 0.25 * res * res;
    }
  }
  for (; i < n; i++) {
    const row = x + <usize> (i * dp) * 4;
    let f: f64 = 0;
    for (let k = 0; k < d; k++) {
      f += load<f64>(USQ + (<usize> k << 3)) * <f64> load<f32>(row + (<usize> k << 2));
    }
    const res = f - <f64> load<f32>(y + (<usize> i << 2));
    loss += 0.25 * res * res;
  }
  writeRow(out, snap, r, <f32> (loss / n), <f32> testErr, <f32> Math.sqrt(norm2), <f32> support);
}

/**
 * writeMetrics of the block's four live replicas r0 … r0 + 3 (shared data, XT made) at once:
 * replicas in f64x2 lanes, r0 and r0 + 1 in one register, r0 + 2 and r0 + 3 in another. Every
 * lane does writeMetrics's operations for its replica in the same order (u = vk·vk; the k sums
 * in k order; each row's sum Σ_k u_k·x_ik in k order; the loss over rows in i order; no fused
 * multiply-add), so the numbers are its bits; what is saved is the per-replica passes: one
 * load of x_ik serves four replicas, and four rows × two pairs of sums overlap their adds.
 */
/**
 * loss + ¼·(sum − y)² in each lane, evaluated as (0.25·res)·res: writeMetrics's operations in its
 * order, so the same bits.
 */
function addQuarterSquare(loss: v128, sum: v128, y: v128): v128 {
  const res = f64x2.sub(sum, y);
  return f64x2.add(loss, f64x2.mul(f64x2.mul(f64x2.splat(0.25), res), res));
}

function writeMetricsBlock(r0: i32, out: usize, snap: i32): void {
  const vBytes = <usize> dp << 2;
  const v0 = V + <usize> r0 * vBytes;
  const v1 = v0 + vBytes, v2 = v1 + vBytes, v3 = v2 + vBytes;
  const zero = f64x2.splat(0);
  const threshold = f64x2.splat(SUPPORT_THRESHOLD);
  let errA = zero, errB = zero, normA = zero, normB = zero;
  let supA = i64x2.splat(0), supB = i64x2.splat(0);
  for (let k = 0; k < d; k++) {
    const o = <usize> k << 2;
    const va = f64x2.promote_low_f32x4(v128.load32_lane(v1 + o, v128.load32_zero(v0 + o), 1));
    const vb = f64x2.promote_low_f32x4(v128.load32_lane(v3 + o, v128.load32_zero(v2 + o), 1));
    const ua = f64x2.mul(va, va);
    const ub = f64x2.mul(vb, vb);
    const at = USQB + (<usize> k << 5);
    v128.store(at, ua);
    v128.store(at, ub, 16);
    const star = f64x2.splat(<f64> load<f32>(VSTAR + o));
    const ea = f64x2.sub(ua, star);
    const eb = f64x2.sub(ub, star);
    errA = f64x2.add(errA, f64x2.mul(ea, ea));
    errB = f64x2.add(errB, f64x2.mul(eb, eb));
    normA = f64x2.add(normA, ua);
    normB = f64x2.add(normB, ub);
    // A true lane of gt is all ones, −1 as an i64: subtracting it counts the lane.
    supA = i64x2.sub(supA, f64x2.gt(ua, threshold));
    supB = i64x2.sub(supB, f64x2.gt(ub, threshold));
  }
  const rowBytes = <usize> nEven << 3;
  const uEnd = USQB + (<usize> d << 5);
  let lossA = zero, lossB = zero;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    let b0 = zero, b1 = zero, b2 = zero, b3 = zero;
    let at = XT + (<usize> i << 3);
    for (let u = USQB; u < uEnd; u += 32, at += rowBytes) {
      const ua = v128.load(u);
      const ub = v128.load(u, 16);
      const x0 = v128.load64_splat(at);
      a0 = f64x2.add(a0, f64x2.mul(ua, x0));
      b0 = f64x2.add(b0, f64x2.mul(ub, x0));
      const x1 = v128.load64_splat(at, 8);
      a1 = f64x2.add(a1, f64x2.mul(ua, x1));
      b1 = f64x2.add(b1, f64x2.mul(ub, x1));
      const x2 = v128.load64_splat(at, 16);
      a2 = f64x2.add(a2, f64x2.mul(ua, x2));
      b2 = f64x2.add(b2, f64x2.mul(ub, x2));
      const x3 = v128.load64_splat(at, 24);
      a3 = f64x2.add(a3, f64x2.mul(ua, x3));
      b3 = f64x2.add(b3, f64x2.mul(ub, x3));
    }
    const y = Y + (<usize> i << 2);
    let yi = f64x2.splat(<f64> load<f32>(y));
    lossA = addQuarterSquare(lossA, a0, yi);
    lossB = addQuarterSquare(lossB, b0, yi);
    yi = f64x2.splat(<f64> load<f32>(y, 4));
    lossA = addQuarterSquare(lossA, a1, yi);
    lossB = addQuarterSquare(lossB, b1, yi);
    yi = f64x2.splat(<f64> load<f32>(y, 8));
    lossA = addQuarterSquare(lossA, a2, yi);
    lossB = addQuarterSquare(lossB, b2, yi);
    yi = f64x2.splat(<f64> load<f32>(y, 12));
    lossA = addQuarterSquare(lossA, a3, yi);
    lossB = addQuarterSquare(lossB, b3, yi);
  }
  if (i + 2 <= n) {
    let a0 = zero, a1 = zero, b0 = zero, b1 = zero;
    let at = XT + (<usize> i << 3);
    for (let u = USQB; u < uEnd; u += 32, at += rowBytes) {
      const ua = v128.load(u);
      const ub = v128.load(u, 16);
      const x0 = v128.load64_splat(at);
      a0 = f64x2.add(a0, f64x2.mul(ua, x0));
      b0 = f64x2.add(b0, f64x2.mul(ub, x0));
      const x1 = v128.load64_splat(at, 8);
      a1 = f64x2.add(a1, f64x2.mul(ua, x1));
      b1 = f64x2.add(b1, f64x2.mul(ub, x1));
    }
    const y = Y + (<usize> i << 2);
    let yi = f64x2.splat(<f64> load<f32>(y));
    lossA = addQuarterSquare(lossA, a0, yi);
    lossB = addQuarterSquare(lossB, b0, yi);
    yi = f64x2.splat(<f64> load<f32>(y, 4));
    lossA = addQuarterSquare(lossA, a1, yi);
    lossB = addQuarterSquare(lossB, b1, yi);
    i += 2;
  }
  if (i < n) {
    let a = zero, b = zero;
    let at = XT + (<usize> i << 3);
    for (let u = USQB; u < uEnd; u += 32, at += rowBytes) {
      const x = v128.load64_splat(at);
      a = f64x2.add(a, f64x2.mul(v128.load(u), x));
      b = f64x2.add(b, f64x2.mul(v128.load(u, 16), x));
    }
    const yi = f64x2.splat(<f64> load<f32>(Y + (<usize> i << 2)));
    lossA = addQuarterSquare(lossA, a, yi);
    lossB = addQuarterSquare(lossB, b, yi);
  }
  const nf = <f64> n;
  writeRow(
    out,
    snap,
    r0,
    <f32> (f64x2.extract_lane(lossA, 0) / nf),
    <f32> f64x2.extract_lane(errA, 0),
    <f32> Math.sqrt(f64x2.extract_lane(normA, 0)),
    <f32> <i32> i64x2.extract_lane(supA, 0),
  );
  writeRow(
    out,
    snap,
    r0 + 1,
    <f32> (f64x2.extract_lane(lossA, 1) / nf),
    <f32> f64x2.extract_lane(errA, 1),
    <f32> Math.sqrt(f64x2.extract_lane(normA, 1)),
    <f32> <i32> i64x2.extract_lane(supA, 1),
  );
  writeRow(
    out,
    snap,
    r0 + 2,
    <f32> (f64x2.extract_lane(lossB, 0) / nf),
    <f32> f64x2.extract_lane(errB, 0),
    <f32> Math.sqrt(f64x2.extract_lane(normB, 0)),
    <f32> <i32> i64x2.extract_lane(supB, 0),
  );
  writeRow(
    out,
    snap,
    r0 + 3,
    <f32> (f64x2.extract_lane(lossB, 1) / nf),
    <f32> f64x2.extract_lane(errB, 1),
    <f32> Math.sqrt(f64x2.extract_lane(normB, 1)),
    <f32> <i32> i64x2.extract_lane(supB, 1),
  );
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
  let r = 0;
  if (blocking && sets == 1) {
    for (; r + BLOCK <= replicas; r += BLOCK) runBlock(r, from, end, every, total, out, snaps);
  }
  for (; r < replicas; r++) {
    const snap = isDiverged(r) ? 0 : runReplica(r, from, end, every, total, out, 0);
    fillNaN(r, out, snap, snaps);
  }
  return snaps;
}

function fillNaN(r: i32, out: usize, from: i32, snaps: i32): void {
  for (let snap = from; snap < snaps; snap++) writeRow(out, snap, r, NaN, NaN, NaN, NaN);
}

/**
 * Steps live replica r from step `from` to `end`, writing its metrics from snapshot index
 * `snap` on; returns the next snapshot index (short of all if r diverged).
 */
function runReplica(
  r: i32,
  from: i64,
  end: i64,
  every: i64,
  total: i64,
  out: usize,
  snap: i32,
): i32 {
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
  return snap;
}

/**
 * Replicas r0 … r0 + BLOCK − 1 through the blocked step while all are live; from the step one
 * diverges, the others go on one by one (same numbers either way).
 */
function runBlock(
  r0: i32,
  from: i64,
  end: i64,
  every: i64,
  total: i64,
  out: usize,
  snaps: i32,
): void {
  let live = true;
  for (let b = 0; b < BLOCK; b++) if (isDiverged(r0 + b)) live = false;
  let snap = 0;
  // Snapshots a replica that diverges in this call has before it (none at its divergence step).
  let divergedSnap = 0;
  let s = from;
  let next = nextSnapshot(from, every, total);
  while (live && s < end) {
    const ok = stepBlock(r0, <u32> s);
    s++;
    if (ok != (1 << BLOCK) - 1) {
      for (let b = 0; b < BLOCK; b++) {
        if (((ok >> b) & 1) == 0) store<f64>(DIVERGED + (<usize> (r0 + b) << 3), <f64> s);
      }
      live = false;
      divergedSnap = snap;
    }
    if (s == next) {
      if (live && blockMetrics && XT != 0) writeMetricsBlock(r0, out, snap);
      else for (let b = 0; b < BLOCK; b++) if (!isDiverged(r0 + b)) writeMetrics(r0 + b, out, snap);
      snap++;
      next = nextSnapshot(s, every, total);
    }
  }
  for (let b = 0; b < BLOCK; b++) {
    const r = r0 + b;
    let own = snap;
    if (isDiverged(r)) own = divergedSnap;
    else if (s < end) own = runReplica(r, s, end, every, total, out, snap);
    fillNaN(r, out, own, snaps);
  }
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
