// @ts-nocheck: AssemblyScript source (i32, f32, v128, f32x4, load<T>): asc type-checks it.
/**
 * Kernel of `linear-label-noise` (server/experiments/linear_label_noise_*.ts): R replicas of
 * f(x) = aᵀWx, float32 state, many steps per call. The float64 reference is the oracle;
 * the random draws follow the protocol in linear_label_noise_setup.ts exactly.
 *
 * Layout: neurons are the SIMD lanes. W of a replica is stored neuron-minor, [d][mp] with
 * mp = 4⌈m/4⌉, so one f32x4 holds coordinate k of four neurons and every per-neuron
 * quantity (h_i = w_iᵀx, a_i, S_i) is a plain vector: no horizontal sums in the hot loop.
 * Padding neurons have w = a = 0 and stay 0 (the oscillation chain skips them).
 *
 * One pass over W per step. An SGD step t needs h = W x_t and f = aᵀh before it can update
 * anything (r = f − y − ε is global), so the pass that applies step t also computes
 * h(t+1) = W(t+1) x_{t+1} and f(t+1) for the next sample, drawn ahead. GD and oscillation
 * steps likewise compute θ(t+1) = Σ a_i(t+1) w_i(t+1) while updating. The first step of a
 * call (or after the switch to GD) runs a separate prelude pass.
 *
 * S_i = Σ_t (‖Δw_i‖² − Δa_i²) is accumulated with Kahan compensation so that the float32
 * balance residual measures the state's rounding, not the accumulator's.
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
import { hsum, madd, nmadd } from "./simd.ts";
import { allocZeroed } from "./memory.ts";

// ALGO_CODE of linear_label_noise_setup.ts.
const ALGO_LNSGD = 0;
const ALGO_GD = 2;
const ALGO_OSC = 3;
const ALGO_PERIODIC = 4;
// Step kinds.
const KIND_SGD = 0;
const KIND_GD = 1;
const KIND_OSC = 2;
// Stream ids of linear_label_noise_setup.ts.
const STREAM_ONLINE: u32 = 6;
const STREAM_INDEX: u32 = 7;
const STREAM_NOISE: u32 = 8;
const STREAM_CHAIN: u32 = 9;
const DATA_REPLICA: u32 = 0xFFFFFFFF;
export const METRIC_COUNT = 14;

let m = 0;
let mp = 0;
let d = 0;
let dp = 0;
let n = 0;
let nTest = 0;
let replicas = 0;
let dataSets = 1;
let initSets = 1;
let algo = 0;
let online = false;
let gaussianNoise = false;
let seed: u32 = 0;
/** Global index of replica 0 when this run is a shard of a larger one (RunSpec.firstReplica). */
let firstReplica: u32 = 0;
let period: i64 = 1;
let gdFrom: i64 = 0x7FFFFFFFFFFFFFFF;

let X: usize = 0; // [dataSets][n][dp] f32, rows padded with zeros
let Y: usize = 0; // [dataSets][n] f32
let XT: usize = 0; // [dataSets][nTest][dp] f32
let YT: usize = 0; // [dataSets][nTest] f32
let STAR: usize = 0; // [dataSets][dp] f32: θ*
let W0: usize = 0; // [initSets][d][mp] f32
let A0: usize = 0; // [R][mp] f32
let W: usize = 0; // [R][d][mp] f32: the state
let A: usize = 0; // [R][mp] f32
let S: usize = 0; // [R][mp] f32: Σ(‖Δw‖² − Δa²)
let SC: usize = 0; // [R][mp] f32: Kahan compensation of S
let C0: usize = 0; // [R][mp] f64: ‖w_i(0)‖² − a_i(0)²
let HYPER: usize = 0; // [R][4] f32: lr, sigma, chain amplitude, unused
let DIVERGED: usize = 0; // [R] f64: step at which the state became non-finite, or -1
// Scratch of the replica being stepped (replicas run one after another).
let H: usize = 0; // [mp] f32: h_i = w_iᵀx for the pending sample
let XA: usize = 0; // [dp] f32: online sample buffers (two, alternating)
let XB: usize = 0;
let TH: usize = 0; // [dp] f32: θ = Σ a_i w_i
let G: usize = 0; // [dp] f32: gradient wrt θ
let TH4: usize = 0; // [d][4] f32: per-lane partial sums of θ
let THETA64: usize = 0; // [d] f64: θ for the metrics

// The pending sample of an SGD step (set by drawSample).
let sampleX: usize = 0;
let sampleY: f32 = 0;

/** Allocates every buffer; call once per instance before filling data and state. */
export function setup(
  mIn: i32,
  dIn: i32,
  nIn: i32,
  nTestIn: i32,
  replicasIn: i32,
  dataSetsIn: i32,
  initSetsIn: i32,
  algoIn: i32,
  onlineIn: i32,
  gaussianIn: i32,
  seedIn: u32,
  periodIn: f64,
  gdFromIn: f64,
): void {
  m = mIn;
  mp = (mIn + 3) & ~3;
  d = dIn;
  dp = (dIn + 3) & ~3;
  n = nIn;
  nTest = nTestIn;
  replicas = replicasIn;
  dataSets = dataSetsIn;
  initSets = initSetsIn;
  algo = algoIn;
  online = onlineIn != 0;
  gaussianNoise = gaussianIn != 0;
  seed = seedIn;
  period = <i64> periodIn;
  gdFrom = gdFromIn < 9e18 ? <i64> gdFromIn : 0x7FFFFFFFFFFFFFFF;
  X = allocZeroed(dataSets * n * dp * 4);
  Y = allocZeroed(dataSets * n * 4);
  XT = allocZeroed(dataSets * nTest * dp * 4);
  YT = allocZeroed(dataSets * nTest * 4);
  STAR = allocZeroed(dataSets * dp * 4);
  W0 = allocZeroed(initSets * d * mp * 4);
  A0 = allocZeroed(replicas * mp * 4);
  W = allocZeroed(replicas * d * mp * 4);
  A = allocZeroed(replicas * mp * 4);
  S = allocZeroed(replicas * mp * 4);
  SC = allocZeroed(replicas * mp * 4);
  C0 = allocZeroed(replicas * mp * 8);
  HYPER = allocZeroed(replicas * 16);
  DIVERGED = allocZeroed(replicas * 8);
  H = allocZeroed(mp * 4);
  XA = allocZeroed(dp * 4);
  XB = allocZeroed(dp * 4);
  TH = allocZeroed(dp * 4);
  G = allocZeroed(dp * 4);
  TH4 = allocZeroed(d * 16);
  THETA64 = allocZeroed(d * 8);
}

export function paddedNeurons(): i32 {
  return mp;
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
export function xTestPtr(): usize {
  return XT;
}
export function yTestPtr(): usize {
  return YT;
}
export function thetaStarPtr(): usize {
  return STAR;
}
export function w0Ptr(): usize {
  return W0;
}
export function a0Ptr(): usize {
  return A0;
}
export function hyperPtr(): usize {
  return HYPER;
}
export function divergedPtr(): usize {
  return DIVERGED;
}

/** The state, for checkpoints: W [R][d][mp], then a, S and its compensation SC [R][mp] (f32). */
export function wPtr(): usize {
  return W;
}
export function aPtr(): usize {
  return A;
}
export function sPtr(): usize {
  return S;
}
export function scPtr(): usize {
  return SC;
}

/** Scratch memory for the host (metrics and frame read-back). */
export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}

function wOf(r: i32): usize {
  return W + <usize> (r * d) * <usize> (mp * 4);
}
function w0Of(r: i32): usize {
  return W0 + <usize> ((initSets == 1 ? 0 : r) * d) * <usize> (mp * 4);
}
function vecOf(base: usize, r: i32): usize {
  return base + <usize> (r * mp) * 4;
}
function dataSet(r: i32): i32 {
  return dataSets == 1 ? 0 : r;
}
function dataSeed(r: i32): u32 {
  return dataSets == 1 ? seed : seed + firstReplica + <u32> r;
}

/** Replica r's keys and data seed use first + r; call after setup (default 0). */
export function setFirstReplica(first: u32): void {
  firstReplica = first;
}

function starOf(r: i32): usize {
  return STAR + <usize> (dataSet(r) * dp) * 4;
}

/** W = W(0), a = a(0), S = 0, c_i = ‖w_i(0)‖² − a_i(0)² (float64), nobody diverged. */
export function resetState(): void {
  for (let r = 0; r < replicas; r++) {
    memory.copy(wOf(r), w0Of(r), <usize> (d * mp * 4));
    memory.copy(vecOf(A, r), vecOf(A0, r), <usize> (mp * 4));
    memory.fill(vecOf(S, r), 0, <usize> (mp * 4));
    memory.fill(vecOf(SC, r), 0, <usize> (mp * 4));
    const w = wOf(r);
    const a = vecOf(A, r);
    for (let i = 0; i < mp; i++) {
      let s: f64 = 0;
      for (let k = 0; k < d; k++) {
        const v = <f64> load<f32>(w + (<usize> (k * mp + i) << 2));
        s += v * v;
      }
      const ai = <f64> load<f32>(a + (<usize> i << 2));
      store<f64>(C0 + (<usize> (r * mp + i) << 3), s - ai * ai);
    }
    store<f64>(DIVERGED + (<usize> r << 3), -1);
  }
}

function kindOf(s: i64): i32 {
  if (algo == ALGO_OSC) return KIND_OSC;
  if (algo == ALGO_GD || s >= gdFrom) return KIND_GD;
  return KIND_SGD;
}

function noiseOn(s: i64): bool {
  if (algo == ALGO_PERIODIC) return (s / period) % 2 == 0;
  return algo == ALGO_LNSGD;
}

/** The sample of step s into sampleX/sampleY: a training row, or an online draw into buf. */
function drawSample(r: i32, s: i64, buf: usize): void {
  const ds = dataSeed(r);
  if (online) {
    fillNormals(ds, DATA_REPLICA, <u32> s, STREAM_ONLINE, d, buf);
    const star = starOf(r);
    let y: f32 = 0;
    for (let k = 0; k < d; k++) {
      y += load<f32>(star + (<usize> k << 2)) * load<f32>(buf + (<usize> k << 2));
    }
    sampleX = buf;
    sampleY = y;
    return;
  }
  philoxBlock(ds, DATA_REPLICA, <u32> s, STREAM_INDEX, 0);
  const j = <i32> uniformIndex(w0, <u32> n);
  const row = dataSet(r) * n + j;
  sampleX = X + <usize> (row * dp) * 4;
  sampleY = load<f32>(Y + (<usize> row << 2));
}

function labelNoise(r: i32, s: i64): f32 {
  const sigma = load<f32>(HYPER + (<usize> r << 4), 4);
  if (sigma == 0 || !noiseOn(s)) return 0;
  philoxBlock(seed, firstReplica + <u32> r, <u32> s, STREAM_NOISE, 0);
  if (gaussianNoise) {
    boxMuller(w0, w1);
    return sigma * z0;
  }
  return sigma * rademacher(w0);
}

/** Prelude of an SGD step: H = W x and returns f = aᵀH. */
function computeH(r: i32, x: usize): f32 {
  const w = wOf(r);
  const a = vecOf(A, r);
  const rowBytes = <usize> mp << 2;
  let facc = f32x4.splat(0);
  for (let i: usize = 0; i < rowBytes; i += 16) {
    let acc = f32x4.splat(0);
    let p = w + i;
    for (let k = 0; k < d; k++, p += rowBytes) {
      acc = madd(v128.load(p), v128.load_splat<f32>(x + (<usize> k << 2)), acc);
    }
    v128.store(H + i, acc);
    facc = madd(v128.load(a + i), acc, facc);
  }
  return hsum(facc);
}

/** Prelude of a GD/oscillation step: TH = Σ_i a_i w_i. */
function computeTheta(r: i32): void {
  const w = wOf(r);
  const a = vecOf(A, r);
  const rowBytes = <usize> mp << 2;
  for (let k = 0; k < d; k++) {
    let acc = f32x4.splat(0);
    const row = w + <usize> k * rowBytes;
    for (let i: usize = 0; i < rowBytes; i += 16) {
      acc = madd(v128.load(row + i), v128.load(a + i), acc);
    }
    store<f32>(TH + (<usize> k << 2), hsum(acc));
  }
}

/** G = ∇_θ L at TH: (1/n) Σ_j x_j(θx_j − y_j), or θ − θ* online. Returns ‖G‖². */
function computeGradient(r: i32): f32 {
  const dpBytes = <usize> dp << 2;
  if (online) {
    const star = starOf(r);
    for (let k: usize = 0; k < dpBytes; k += 16) {
      v128.store(G + k, f32x4.sub(v128.load(TH + k), v128.load(star + k)));
    }
  } else {
    memory.fill(G, 0, dpBytes);
    const set = dataSet(r);
    const x = X + <usize> (set * n) * dpBytes;
    const y = Y + <usize> (set * n) * 4;
    for (let j = 0; j < n; j++) {
      const row = x + <usize> j * dpBytes;
      let acc = f32x4.splat(0);
      for (let k: usize = 0; k < dpBytes; k += 16) {
        acc = madd(v128.load(row + k), v128.load(TH + k), acc);
      }
      const res = f32x4.splat(hsum(acc) - load<f32>(y + (<usize> j << 2)));
      for (let k: usize = 0; k < dpBytes; k += 16) {
        v128.store(G + k, madd(res, v128.load(row + k), v128.load(G + k)));
      }
    }
    const inv = f32x4.splat(<f32> 1 / <f32> n);
    for (let k: usize = 0; k < dpBytes; k += 16) {
      v128.store(G + k, f32x4.mul(v128.load(G + k), inv));
    }
  }
  let gg: f32 = 0;
  for (let k = 0; k < d; k++) {
    const g = load<f32>(G + (<usize> k << 2));
    gg += g * g;
  }
  return gg;
}

/** S_i += inc_i with Kahan compensation, four neurons at p. */
function kahanAdd(sp: usize, cp: usize, inc: v128): void {
  const y = f32x4.sub(inc, v128.load(cp));
  const s = v128.load(sp);
  const t = f32x4.add(s, y);
  v128.store(cp, f32x4.sub(f32x4.sub(t, s), y));
  v128.store(sp, t);
}

/**
 * SGD step (eqs. 15–16) with H = W x and f = aᵀH already computed for x: W ← W − ηr a xᵀ,
 * a ← a − ηr h, and h' = W' xn, f' = a'ᵀh' for the next sample xn. Returns f' in `nextF`;
 * false if the new state is not finite.
 */
let nextF: f32 = 0;
function sgdPass(r: i32, x: usize, xx: f32, res: f32, xn: usize): bool {
  const lr = load<f32>(HYPER + (<usize> r << 4));
  const lrr = lr * res;
  const lrrv = f32x4.splat(lrr);
  const xxv = f32x4.splat(xx);
  const w = wOf(r);
  const a = vecOf(A, r);
  const sp = vecOf(S, r);
  const cp = vecOf(SC, r);
  const rowBytes = <usize> mp << 2;
  let probe = f32x4.splat(0);
  let facc = f32x4.splat(0);
  let i: usize = 0;
  // Eight neurons per pass: two independent h' chains cover the multiply-add latency. Each
  // neuron's numbers, and the order of f' = Σ a'h', are those of the four-neuron pass below.
  for (; i + 32 <= rowBytes; i += 32) {
    const av0 = v128.load(a + i);
    const av1 = v128.load(a + i, 16);
    const cw0 = f32x4.mul(lrrv, av0);
    const cw1 = f32x4.mul(lrrv, av1);
    let acc0 = f32x4.splat(0);
    let acc1 = f32x4.splat(0);
    let p = w + i;
    for (let k = 0; k < d; k++, p += rowBytes) {
      const kb = <usize> k << 2;
      const xk = v128.load_splat<f32>(x + kb);
      const xnk = v128.load_splat<f32>(xn + kb);
      const wn0 = nmadd(cw0, xk, v128.load(p));
      const wn1 = nmadd(cw1, xk, v128.load(p, 16));
      v128.store(p, wn0);
      v128.store(p, wn1, 16);
      probe = f32x4.add(probe, f32x4.add(f32x4.sub(wn0, wn0), f32x4.sub(wn1, wn1)));
      acc0 = madd(wn0, xnk, acc0);
      acc1 = madd(wn1, xnk, acc1);
    }
    const an0 = sgdNeuronTail(i, av0, cw0, acc0, lrrv, xxv, a, sp, cp);
    facc = madd(an0, acc0, facc);
    const an1 = sgdNeuronTail(i + 16, av1, cw1, acc1, lrrv, xxv, a, sp, cp);
    facc = madd(an1, acc1, facc);
    probe = f32x4.add(probe, f32x4.add(f32x4.sub(an0, an0), f32x4.sub(an1, an1)));
  }
  for (; i < rowBytes; i += 16) {
    const av = v128.load(a + i);
    const cw = f32x4.mul(lrrv, av);
    let acc = f32x4.splat(0);
    let p = w + i;
    for (let k = 0; k < d; k++, p += rowBytes) {
      const kb = <usize> k << 2;
      const wn = nmadd(cw, v128.load_splat<f32>(x + kb), v128.load(p));
      v128.store(p, wn);
      probe = f32x4.add(probe, f32x4.sub(wn, wn));
      acc = madd(wn, v128.load_splat<f32>(xn + kb), acc);
    }
    const an = sgdNeuronTail(i, av, cw, acc, lrrv, xxv, a, sp, cp);
    probe = f32x4.add(probe, f32x4.sub(an, an));
    facc = madd(an, acc, facc);
  }
  nextF = hsum(facc);
  return !v128.any_true(f32x4.ne(probe, probe));
}

/**
 * The end of sgdPass for the four neurons at byte i: a' = a − ηr h into A, h' = acc into H,
 * the balance identity's increment (Kahan-summed); returns a'.
 */
function sgdNeuronTail(
  i: usize,
  av: v128,
  cw: v128,
  acc: v128,
  lrrv: v128,
  xxv: v128,
  a: usize,
  sp: usize,
  cp: usize,
): v128 {
  const da = f32x4.neg(f32x4.mul(lrrv, v128.load(H + i)));
  const an = f32x4.add(av, da);
  v128.store(a + i, an);
  kahanAdd(sp + i, cp + i, f32x4.sub(f32x4.mul(f32x4.mul(cw, cw), xxv), f32x4.mul(da, da)));
  v128.store(H + i, acc);
  return an;
}

/** Accumulates θ' lanes: TH4[k] += a' ⊙ w'[k] for the four neurons at column offset i. */
function accumulateTheta(p0: usize, an: v128): void {
  const rowBytes = <usize> mp << 2;
  let p = p0;
  for (let k = 0; k < d; k++, p += rowBytes) {
    const t = TH4 + (<usize> k << 4);
    v128.store(t, madd(an, v128.load(p), v128.load(t)));
  }
}

function finishTheta(): void {
  for (let k = 0; k < d; k++) {
    store<f32>(TH + (<usize> k << 2), hsum(v128.load(TH4 + (<usize> k << 4))));
  }
}

/**
 * GD step (eqs. 47–50) with θ in TH: w_i ← w_i − η a_i g, a_i ← a_i − η<w_i, g>; leaves
 * θ(t+1) in TH. False if the new state is not finite.
 */
function gdPass(r: i32): bool {
  const lr = load<f32>(HYPER + (<usize> r << 4));
  const gg = computeGradient(r);
  const lrv = f32x4.splat(lr);
  const ggv = f32x4.splat(gg);
  const w = wOf(r);
  const a = vecOf(A, r);
  const sp = vecOf(S, r);
  const cp = vecOf(SC, r);
  const rowBytes = <usize> mp << 2;
  memory.fill(TH4, 0, <usize> (d * 16));
  let probe = f32x4.splat(0);
  for (let i: usize = 0; i < rowBytes; i += 16) {
    const av = v128.load(a + i);
    const cw = f32x4.mul(lrv, av);
    let wg = f32x4.splat(0);
    let p = w + i;
    for (let k = 0; k < d; k++, p += rowBytes) {
      const gk = v128.load_splat<f32>(G + (<usize> k << 2));
      const wv = v128.load(p);
      wg = madd(wv, gk, wg);
      const wn = nmadd(cw, gk, wv);
      v128.store(p, wn);
      probe = f32x4.add(probe, f32x4.sub(wn, wn));
    }
    const da = f32x4.neg(f32x4.mul(lrv, wg));
    const an = f32x4.add(av, da);
    v128.store(a + i, an);
    probe = f32x4.add(probe, f32x4.sub(an, an));
    kahanAdd(sp + i, cp + i, f32x4.sub(f32x4.mul(f32x4.mul(cw, cw), ggv), f32x4.mul(da, da)));
    accumulateTheta(w + i, an);
  }
  finishTheta();
  return !v128.any_true(f32x4.ne(probe, probe));
}

/**
 * Oscillation step (§3.2.1, eqs. 5–6) with θ in TH: w_i ← w_i − η a_i(t) g, and a_i(t+1) = 0
 * if a_i(t) ≠ 0, else ±c by the neuron's chain bit. Leaves θ(t+1) in TH.
 */
function oscillationPass(r: i32, s: i64): bool {
  const hyper = HYPER + (<usize> r << 4);
  const lrv = f32x4.splat(load<f32>(hyper));
  const c = load<f32>(hyper, 8);
  computeGradient(r);
  const w = wOf(r);
  const a = vecOf(A, r);
  const rowBytes = <usize> mp << 2;
  memory.fill(TH4, 0, <usize> (d * 16));
  let probe = f32x4.splat(0);
  let word0: u32 = 0;
  let word1: u32 = 0;
  let word2: u32 = 0;
  let word3: u32 = 0;
  for (let i = 0; i < mp; i += 4) {
    if ((i & 127) == 0) {
      philoxBlock(seed, firstReplica + <u32> r, <u32> s, STREAM_CHAIN, <u32> (i >>> 7));
      word0 = w0;
      word1 = w1;
      word2 = w2;
      word3 = w3;
    }
    const sel = (i >>> 5) & 3;
    const word = sel == 0 ? word0 : sel == 1 ? word1 : sel == 2 ? word2 : word3;
    const off = <usize> i << 2;
    const av = v128.load(a + off);
    for (let l = 0; l < 4; l++) {
      const ai = load<f32>(a + off + (<usize> l << 2));
      let next: f32 = 0;
      if (i + l < m && ai == 0) next = ((word >>> <u32> ((i + l) & 31)) & 1) == 0 ? c : -c;
      store<f32>(a + off + (<usize> l << 2), next);
    }
    const an = v128.load(a + off);
    const cw = f32x4.mul(lrv, av);
    let p = w + off;
    for (let k = 0; k < d; k++, p += rowBytes) {
      const wn = nmadd(cw, v128.load_splat<f32>(G + (<usize> k << 2)), v128.load(p));
      v128.store(p, wn);
      probe = f32x4.add(probe, f32x4.sub(wn, wn));
    }
    accumulateTheta(w + off, an);
  }
  finishTheta();
  return !v128.any_true(f32x4.ne(probe, probe));
}

/** ‖x‖² of a sample in float32. */
function sqNorm(x: usize): f32 {
  let s: f32 = 0;
  for (let k = 0; k < d; k++) {
    const v = load<f32>(x + (<usize> k << 2));
    s += v * v;
  }
  return s;
}

/**
 * Steps replica r from `from` to `end` (exclusive), writing metrics at snapshot steps.
 * Returns the number of snapshots written; stops early (recording the step) on divergence.
 */
function runReplica(r: i32, from: i64, end: i64, every: i64, total: i64, out: usize): i32 {
  let snap = 0;
  let next = nextSnapshot(from, every, total);
  // Which prelude is valid for the current step: -1 none, else the kind it was made for.
  let ready = -1;
  let f: f32 = 0;
  let buf = XA;
  for (let s = from; s < end;) {
    const kind = kindOf(s);
    let ok = true;
    if (kind == KIND_SGD) {
      if (ready != KIND_SGD) {
        drawSample(r, s, buf);
        f = computeH(r, sampleX);
        ready = KIND_SGD;
      }
      const x = sampleX;
      const res = f - sampleY - labelNoise(r, s);
      const xx = sqNorm(x);
      // Draw the next step's sample now so the update pass can compute its h.
      let xn = x;
      const ahead = s + 1 < end && kindOf(s + 1) == KIND_SGD;
      if (ahead) {
        buf = buf == XA ? XB : XA;
        drawSample(r, s + 1, buf);
        xn = sampleX;
      }
      ok = sgdPass(r, x, xx, res, xn);
      f = nextF;
      if (!ahead) ready = -1;
    } else {
      if (ready != KIND_GD) {
        computeTheta(r);
        ready = KIND_GD; // GD and oscillation share the θ prelude
      }
      ok = kind == KIND_GD ? gdPass(r) : oscillationPass(r, s);
    }
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

/** First snapshot step after s: min(total, (⌊s/every⌋ + 1)·every), as snapshots.ts. */
function nextSnapshot(s: i64, every: i64, total: i64): i64 {
  const next = (s / every + 1) * every;
  return next < total ? next : total;
}

function isDiverged(r: i32): bool {
  return load<f64>(DIVERGED + (<usize> r << 3)) >= 0;
}

/**
 * Advances every live replica from `from` by `count` steps; writes the metrics of each
 * snapshot step in (from, from + count] to out ([snap][metric][replica] f32) and returns how
 * many there were. Steps travel as f64 (exact to 2^53); Philox sees them modulo 2^32.
 */
export function advance(fromF: f64, count: f64, everyF: f64, totalF: f64, out: usize): i32 {
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
    if (!isDiverged(r)) snap = runReplica(r, from, end, every, total, out);
    for (; snap < snaps; snap++) writeNaN(r, out, snap);
  }
  return snaps;
}

function metricSlot(out: usize, snap: i32, metric: i32, r: i32): usize {
  return out + <usize> ((snap * METRIC_COUNT + metric) * replicas + r) * 4;
}

function writeNaN(r: i32, out: usize, snap: i32): void {
  for (let q = 0; q < METRIC_COUNT; q++) store<f32>(metricSlot(out, snap, q, r), NaN);
}

/** ½-MSE of θ (THETA64) over `rows` rows of a data block. */
function halfMse(x: usize, y: usize, rows: i32): f64 {
  let sum: f64 = 0;
  for (let j = 0; j < rows; j++) {
    const row = x + <usize> (j * dp) * 4;
    let res = -<f64> load<f32>(y + (<usize> j << 2));
    for (let k = 0; k < d; k++) {
      res += load<f64>(THETA64 + (<usize> k << 3)) * <f64> load<f32>(row + (<usize> k << 2));
    }
    sum += 0.5 * res * res;
  }
  return sum / <f64> rows;
}

/**
 * The 14 metrics of replica r (LINEAR_METRICS order) in float64 from the float32 state:
 * train_loss, test_loss, w_norm_mean/min/max, a_abs_mean/max, align_abs_cos,
 * align_signed_cos, align_raw, lazy_dist_min/max, theta_error, balance_residual.
 */
function writeMetrics(r: i32, out: usize, snap: i32): void {
  const w = wOf(r);
  const w0p = w0Of(r);
  const a = vecOf(A, r);
  const star = starOf(r);
  const set = dataSet(r);
  for (let k = 0; k < d; k++) {
    let t: f64 = 0;
    const row = w + <usize> (k * mp) * 4;
    for (let i = 0; i < m; i++) {
      t += <f64> load<f32>(a + (<usize> i << 2)) * <f64> load<f32>(row + (<usize> i << 2));
    }
    store<f64>(THETA64 + (<usize> k << 3), t);
  }
  let starSq: f64 = 0, errSq: f64 = 0;
  for (let k = 0; k < d; k++) {
    const ts = <f64> load<f32>(star + (<usize> k << 2));
    const e = load<f64>(THETA64 + (<usize> k << 3)) - ts;
    starSq += ts * ts;
    errSq += e * e;
  }
  const starNorm = Math.sqrt(starSq);
  let nSum: f64 = 0, nMin: f64 = Infinity, nMax: f64 = -Infinity, aSum: f64 = 0, aMax: f64 = 0;
  let absCos: f64 = 0, signedCos: f64 = 0, raw: f64 = 0;
  let dMin: f64 = Infinity, dMax: f64 = -Infinity, bal: f64 = 0;
  for (let i = 0; i < m; i++) {
    let nn: f64 = 0, ip: f64 = 0, dd: f64 = 0;
    for (let k = 0; k < d; k++) {
      const off = <usize> (k * mp + i) << 2;
      const wk = <f64> load<f32>(w + off);
      nn += wk * wk;
      ip += wk * <f64> load<f32>(star + (<usize> k << 2));
      const e = wk - <f64> load<f32>(w0p + off);
      dd += e * e;
    }
    const norm = Math.sqrt(nn);
    const ai = <f64> load<f32>(a + (<usize> i << 2));
    nSum += norm;
    if (norm < nMin) nMin = norm;
    if (norm > nMax) nMax = norm;
    const aAbs = Math.abs(ai);
    aSum += aAbs;
    if (aAbs > aMax) aMax = aAbs;
    const cos = norm > 0 && starNorm > 0 ? ip / (norm * starNorm) : 0;
    absCos += Math.abs(cos);
    signedCos += (ai > 0 ? 1 : ai < 0 ? -1 : 0) * cos;
    raw += ip;
    const dist = Math.sqrt(dd);
    if (dist < dMin) dMin = dist;
    if (dist > dMax) dMax = dist;
    const residual = nn - ai * ai - load<f64>(C0 + (<usize> (r * mp + i) << 3)) -
      <f64> load<f32>(S + (<usize> (r * mp + i) << 2));
    if (Math.abs(residual) > bal) bal = Math.abs(residual);
  }
  const mf = <f64> m;
  const train = online
    ? 0.5 * errSq
    : halfMse(X + <usize> (set * n * dp) * 4, Y + <usize> (set * n) * 4, n);
  const test = halfMse(XT + <usize> (set * nTest * dp) * 4, YT + <usize> (set * nTest) * 4, nTest);
  store<f32>(metricSlot(out, snap, 0, r), <f32> train);
  store<f32>(metricSlot(out, snap, 1, r), <f32> test);
  store<f32>(metricSlot(out, snap, 2, r), <f32> (nSum / mf));
  store<f32>(metricSlot(out, snap, 3, r), <f32> nMin);
  store<f32>(metricSlot(out, snap, 4, r), <f32> nMax);
  store<f32>(metricSlot(out, snap, 5, r), <f32> (aSum / mf));
  store<f32>(metricSlot(out, snap, 6, r), <f32> aMax);
  store<f32>(metricSlot(out, snap, 7, r), <f32> (absCos / mf));
  store<f32>(metricSlot(out, snap, 8, r), <f32> (signedCos / mf));
  store<f32>(metricSlot(out, snap, 9, r), <f32> (raw / mf));
  store<f32>(metricSlot(out, snap, 10, r), <f32> dMin);
  store<f32>(metricSlot(out, snap, 11, r), <f32> dMax);
  store<f32>(metricSlot(out, snap, 12, r), <f32> Math.sqrt(errSq));
  store<f32>(metricSlot(out, snap, 13, r), algo == ALGO_OSC ? NaN : <f32> bal);
}

/** Metrics of every replica's current state as snapshot 0 of `out` (NaN if diverged). */
export function metricsNow(out: usize): void {
  for (let r = 0; r < replicas; r++) {
    if (isDiverged(r)) writeNaN(r, out, 0);
    else writeMetrics(r, out, 0);
  }
}

/** The per-neuron frame: out[r·3m + …] = [‖w_i‖ | <w_i, θ*> | a_i] (float32). */
export function writeFrame(out: usize): void {
  for (let r = 0; r < replicas; r++) {
    const w = wOf(r);
    const a = vecOf(A, r);
    const star = starOf(r);
    const o = out + <usize> (r * 3 * m) * 4;
    for (let i = 0; i < m; i++) {
      let nn: f64 = 0, ip: f64 = 0;
      for (let k = 0; k < d; k++) {
        const wk = <f64> load<f32>(w + (<usize> (k * mp + i) << 2));
        nn += wk * wk;
        ip += wk * <f64> load<f32>(star + (<usize> k << 2));
      }
      store<f32>(o + (<usize> i << 2), <f32> Math.sqrt(nn));
      store<f32>(o + (<usize> (m + i) << 2), <f32> ip);
      store<f32>(o + (<usize> (2 * m + i) << 2), load<f32>(a + (<usize> i << 2)));
    }
  }
}
