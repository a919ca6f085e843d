// PEGR (server/experiments/pegr.ts, mathematics in pegr_model.ts): the two-patch ReLU² CNN
// trained by full-batch GD on L_S (`gd`), on the PEGR objective (`pegr`) or on the FGR
// objective (`fgr`), float32 throughout. Two entry points:
//   `advance`   one workgroup per replica advances it by P.steps updates, then (at a snapshot)
//               writes every metric but the test accuracy into metrics[slot];
//   `test_acc`  one workgroup per (block of WGT test points, replica) counts the correct test
//               points of the current weights into the snapshot's counter in `flags`.
// Training draws no random numbers (all randomness is data), so there is no Philox here.
//
// The host (server/engine/webgpu/pegr.ts) prepends, as text:
//   const D4 (⌈d/4⌉: rows are vec4-padded with zeros), N, M, Q (= 2M), NT (n_test), WG, WGT
//   (threads of the two entry points), ALGO (ALGO_CODE), DATA_PER_REPLICA, WG_SCRATCH (the
//   per-step scratch below, reductions included, in workgroup memory; else in `scratch`),
//   SH_LEN (its length, 1 when unused). The sizes serve as strides and offsets; loop bounds
//   add P.zero (always 0) so that no compiler unrolls loops over them (llvmpipe's LLVM did,
//   completely: tens of seconds of compile time at paper size). For the same reason the host
//   keeps the scratch in storage on llvmpipe, which compiles a workgroup array's zero
//   initialisation into one store per element.
//
// One update t → t+1 of a replica (every quantity from the old W: a simultaneous update), as
// kernels-as/pegr.ts does it:
//   forward  E_{q,i} = σ_p<w_q, z_i> (thread per (q, i)), S_q = ‖μ‖w_q[0]
//            margins u_i = y_i f_i, ζ_i, ℓ'_i, ℓ''_i                 (thread per example)
//   direction α_q μ + Σ_i β_{q,i} ξ_i from the closed forms (thread per (q, i) for β, per q
//            for α); FGR first forms ∇L_S's coefficients, <ξ_i, v_q> through the Gram matrix
//            of the z_i, and <g̃_i, v>, each phase behind a barrier
//   update   w_q ← w_q − lr·σ_p Σ_i β_{q,i} z_i, w_q[0] −= lr·α_q‖μ‖ (thread per (q, vec4));
//            z_i[0] = 0, so coordinate 0 carries only the μ = ‖μ‖e_1 term.
// P.reg_on says whether λ is in force for this dispatch's updates (t < pegr_off): the host
// cuts dispatches at pegr_off. A non-finite new weight marks the replica diverged at the
// step; a diverged replica is frozen (later dispatches return at once).
//
// llvmpipe (Mesa's software rasteriser) ends every loop of an invocation, silently, once
// all loops together have run 65535 iterations. The host sizes dispatches below that, and a
// last loop with a runtime trip count (the canary) reports if it happened anyway, so a
// cut-short dispatch is an error, never wrong numbers.

const ALGO_PEGR: u32 = 1u;
const ALGO_FGR: u32 = 2u;
const NO_SNAP: u32 = 0xFFFFFFFFu;
const NMET: u32 = 12u;  // floats per (slot, replica) in `metrics`, PEGR_METRICS order
const QN: u32 = Q * N;
const NEG_INF: f32 = -3.40282347e38;  // lowest finite float: every max below is over a non-empty set

// Scratch of the current step, per replica (floats).
const O_S: u32 = 0u;             // [Q] <w_q, μ>
const O_ALPHA: u32 = Q;          // [Q] μ coefficients of the direction
const O_GA: u32 = 2u * Q;        // [Q] ∇L_S's μ coefficients (FGR)
const O_MARG: u32 = 3u * Q;      // [N] margins y_i f_i
const O_ZETA: u32 = O_MARG + N;  // [N] ζ_i
const O_L1: u32 = O_ZETA + N;    // [N] ℓ'_i
const O_L2: u32 = O_L1 + N;      // [N] ℓ''_i
const O_GV: u32 = O_L2 + N;      // [N] <g̃_i, v> (FGR)
const O_XISQ: u32 = O_GV + N;    // [N] ‖ξ_i‖² = σ_p²<z_i, z_i>
const O_E: u32 = O_XISQ + N;     // [Q][N] <w_q, ξ_i>
const O_BETA: u32 = O_E + QN;    // [Q][N] ξ coefficients of the direction
const O_GB: u32 = O_BETA + QN;   // [Q][N] ∇L_S's ξ coefficients (FGR)
const O_VXI: u32 = O_GB + QN;    // [Q][N] <ξ_i, v_q> (FGR); <w_q − w0_q, z_i> (metrics)
const O_RED: u32 = O_VXI + QN;  // [WG][4] reductions
const SCR: u32 = O_RED + 4u * WG;

struct Params {
  steps: u32,        // updates in this dispatch (0 for the step-0 snapshot)
  seq: u32,          // dispatch number (≥ 1), stored with a divergence so the host can date it
  snap_slot: u32,    // metrics slot for the state after the last update, or NO_SNAP
  reg_on: u32,       // λ in force for these updates (they are all < pegr_off)
  snap_reg_on: u32,  // λ in force at the snapshot step (for the `regulariser` metric)
  replicas: u32,
  groups_x: u32,     // replica = x + y·groups_x (advance), y + z·groups_x (test_acc)
  canary: u32,       // trip count of the final loop (any value ≥ 1)
  mu_norm: f32,
  fgr_scale: f32,    // 2 (§4.1) or 1 (§5.4)
  off_zt: u32,       // vec4 offsets into `rows`
  off_w0: u32,
  off_yt: u32,       // float offsets into `aux`
  off_g: u32,
  off_gi: u32,
  off_h: u32,
  off_cnt: u32,      // word offset of the test counters in `flags`
  zero: u32,         // 0: added to loop bounds (see nq)
}

@group(0) @binding(0) var<uniform> P: Params;
// Z [sets][N][D4] | Z_test [sets][NT][D4] | W0 [R][Q][D4]
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
// y [sets][N] | y_test [sets][NT] | Gram <z_i, z_k> [sets][N][N] | its inverse | (lr, σ_p, λ, 0) [R]
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<vec4<f32>>;  // W [R][Q][D4]
// [R][4]: (seq, local step) of a divergence, seq of a dispatch cut short, 0 |
// [slot][R] correct test points (cleared by the host before every round).
@group(0) @binding(4) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> metrics: array<f32>;  // [slot][R][NMET]
@group(0) @binding(6) var<storage, read_write> scratch: array<f32>;  // [R][SCR] unless WG_SCRATCH

var<workgroup> sh: array<f32, SH_LEN>;
var<workgroup> sh_bad: atomic<u32>;
var<workgroup> sh_dead: u32;
var<workgroup> sh_count: atomic<u32>;

// Loop bounds: the sizes plus P.zero (always 0), so the compiler cannot unroll loops over
// them (see the header).
var<private> nq: u32;
var<private> nn: u32;
var<private> nd4: u32;
var<private> nqn: u32;
var<private> nqd: u32;
var<private> rep: u32;
var<private> wb: u32;   // this replica's W (and W0) row base, vec4 units
var<private> zb: u32;   // its data set's Z base, vec4 units
var<private> yb: u32;   // its labels in `aux`
var<private> gb: u32;   // its Gram matrix in `aux`
var<private> gib: u32;  // and the inverse
var<private> sb: u32;   // its scratch base
var<private> lr: f32;
var<private> sig: f32;
var<private> lam: f32;

fn ld(i: u32) -> f32 {
  if (WG_SCRATCH) { return sh[i]; }
  return scratch[sb + i];
}
fn st(i: u32, x: f32) {
  if (WG_SCRATCH) { sh[i] = x; } else { scratch[sb + i] = x; }
}
// Scratch may live in storage and W always does: both barriers.
fn sync() {
  storageBarrier();
  workgroupBarrier();
}

fn sgn(q: u32) -> f32 { return select(-1.0, 1.0, q < M); }

// ℓ''(z) = e^{−|z|}/(1 + e^{−|z|})².
fn logistic_d2(z: f32) -> f32 {
  let e = exp(-abs(z));
  return e / ((1.0 + e) * (1.0 + e));
}

// Forward pass of the current weights: E, S, then margins, ζ, ℓ', ℓ''. Ends on a barrier.
fn forward(lid: u32) {
  for (var p = lid; p < nqn; p += WG) {
    let wo = wb + (p / N) * D4;
    let zo = zb + (p % N) * D4;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < nd4; k++) {
      acc += state[wo + k] * rows[zo + k];
    }
    st(O_E + p, sig * hsum(acc));
  }
  for (var q = lid; q < nq; q += WG) {
    st(O_S + q, P.mu_norm * state[wb + q * D4].x);
  }
  sync();
  let mu2 = P.mu_norm * P.mu_norm;
  for (var i = lid; i < nn; i += WG) {
    let yi = aux[yb + i];
    let xsq = ld(O_XISQ + i);
    var f = 0.0;
    var zeta = 0.0;
    for (var q = 0u; q < nq; q++) {
      let a = relu(yi * ld(O_S + q));
      let b = relu(ld(O_E + q * N + i));
      f += sgn(q) * (a * a + b * b);
      zeta += a * a * mu2 + b * b * xsq;
    }
    let u = yi * (f / f32(M));
    st(O_MARG + i, u);
    st(O_ZETA + i, zeta);
    st(O_L1 + i, logistic_d1(u));
    st(O_L2 + i, logistic_d2(u));
  }
  sync();
}

// ∇L_S's coefficients into (oa, ob), plus λ × the PEGR penalty's gradient when `pegr`
// (pegr_model.ts lossGradient and pegrPenaltyGradient). No barrier.
fn direction(lid: u32, oa: u32, ob: u32, pegr: bool) {
  let nf = f32(N);
  let mf = f32(M);
  let mu2 = P.mu_norm * P.mu_norm;
  let sc = 2.0 / (nf * mf);
  let shrink_sc = 4.0 / (nf * mf * mf);
  let cross_sc = 8.0 / (nf * mf * mf * mf);
  for (var p = lid; p < nqn; p += WG) {
    let q = p / N;
    let i = p % N;
    let yi = aux[yb + i];
    let l1 = ld(O_L1 + i);
    let b = relu(ld(O_E + p));
    var beta = l1 * sc * sgn(q) * yi * b;
    if (pegr) {
      let shrink = shrink_sc * l1 * l1;
      let cross = cross_sc * l1 * ld(O_L2 + i) * ld(O_ZETA + i) * sgn(q) * yi;
      beta += lam * (shrink * b * ld(O_XISQ + i) + cross * b);
    }
    st(ob + p, beta);
  }
  for (var q = lid; q < nq; q += WG) {
    let s = ld(O_S + q);
    let j = sgn(q);
    var alpha = 0.0;
    var reg = 0.0;
    for (var i = 0u; i < nn; i++) {
      let yi = aux[yb + i];
      let l1 = ld(O_L1 + i);
      let a = relu(yi * s);
      alpha += l1 * sc * j * yi * a * yi;
      if (pegr) {
        let shrink = shrink_sc * l1 * l1;
        let cross = cross_sc * l1 * ld(O_L2 + i) * ld(O_ZETA + i) * j * yi;
        reg += (shrink * a * mu2 + cross * a) * yi;
      }
    }
    st(oa + q, alpha + lam * reg);
  }
}

// ∇L_S + c_F·λ·H∇L_S (pegr_model.ts hessianVectorProduct with v = ∇L_S in coefficients):
// <μ, v_q> = α_q‖μ‖², <ξ_i, v_q> = σ_p² Σ_k β_{q,k}<z_k, z_i>. Ends before a barrier.
fn fgr_direction(lid: u32) {
  direction(lid, O_GA, O_GB, false);
  sync();
  let s2 = sig * sig;
  for (var p = lid; p < nqn; p += WG) {
    let q = p / N;
    let i = p % N;
    var s = 0.0;
    for (var k = 0u; k < nn; k++) {
      s += ld(O_GB + q * N + k) * aux[gb + k * N + i];
    }
    st(O_VXI + p, s2 * s);
  }
  sync();
  let mf = f32(M);
  let nf = f32(N);
  let mu2 = P.mu_norm * P.mu_norm;
  for (var i = lid; i < nn; i += WG) {
    let yi = aux[yb + i];
    var gv = 0.0;
    for (var q = 0u; q < nq; q++) {
      let a = relu(yi * ld(O_S + q));
      let b = relu(ld(O_E + q * N + i));
      gv += (2.0 * sgn(q) * yi / mf) * (a * yi * ld(O_GA + q) * mu2 + b * ld(O_VXI + q * N + i));
    }
    st(O_GV + i, gv);
  }
  sync();
  let scale = P.fgr_scale * lam;
  for (var p = lid; p < nqn; p += WG) {
    let q = p / N;
    let i = p % N;
    let yi = aux[yb + i];
    let e = ld(O_E + p);
    let c = 2.0 * sgn(q) * yi / (mf * nf);
    let outer = ld(O_L2 + i) * ld(O_GV + i) * c;
    let l1c = ld(O_L1 + i) * c;
    let hb = outer * relu(e) + select(0.0, l1c * ld(O_VXI + p), e > 0.0);
    st(O_BETA + p, ld(O_GB + p) + scale * hb);
  }
  for (var q = lid; q < nq; q += WG) {
    let sq = ld(O_S + q);
    let vmu = ld(O_GA + q) * mu2;
    var h = 0.0;
    for (var i = 0u; i < nn; i++) {
      let yi = aux[yb + i];
      let s = yi * sq;
      let c = 2.0 * sgn(q) * yi / (mf * nf);
      let outer = ld(O_L2 + i) * ld(O_GV + i) * c;
      h += outer * relu(s) * yi + select(0.0, ld(O_L1 + i) * c * vmu, s > 0.0);
    }
    st(O_ALPHA + q, ld(O_GA + q) + scale * h);
  }
}

// W ← W − lr·direction, thread per (q, vec4 of coordinates); flags non-finite weights.
fn update(lid: u32) {
  let step = lr * sig;
  for (var it = lid; it < nqd; it += WG) {
    let q = it / D4;
    let k = it % D4;
    var g = vec4<f32>(0.0);
    for (var i = 0u; i < nn; i++) {
      g += (step * ld(O_BETA + q * N + i)) * rows[zb + i * D4 + k];
    }
    var w = state[wb + it] - g;
    if (k == 0u) {
      w.x = w.x - lr * ld(O_ALPHA + q) * P.mu_norm;
    }
    state[wb + it] = w;
    if (non_finite4(w)) { atomicOr(&sh_bad, 1u); }
  }
}

fn ld4(i: u32) -> vec4<f32> {
  return vec4<f32>(ld(i), ld(i + 1u), ld(i + 2u), ld(i + 3u));
}
fn st4(i: u32, v: vec4<f32>) {
  st(i, v.x);
  st(i + 1u, v.y);
  st(i + 2u, v.z);
  st(i + 3u, v.w);
}

// Sum or maximum of `v` over the workgroup (a uniform result), through the scratch.
fn reduce4(lid: u32, v: vec4<f32>, is_max: bool) -> vec4<f32> {
  st4(O_RED + 4u * lid, v);
  sync();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let a = ld4(O_RED + 4u * lid);
      let b = ld4(O_RED + 4u * (lid + s));
      st4(O_RED + 4u * lid, select(a + b, max(a, b), is_max));
    }
    sync();
  }
  let r = ld4(O_RED);
  sync();
  return r;
}

// Every metric but test_accuracy of the current weights, into metrics[P.snap_slot].
fn write_metrics(lid: u32) {
  forward(lid);
  direction(lid, O_ALPHA, O_BETA, false);  // ∇L_S
  let w0b = P.off_w0 + wb;  // W0 has W's layout
  for (var p = lid; p < nqn; p += WG) {
    let wo = (p / N) * D4;
    let zo = zb + (p % N) * D4;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < nd4; k++) {
      acc += (state[wb + wo + k] - rows[w0b + wo + k]) * rows[zo + k];
    }
    st(O_VXI + p, hsum(acc));  // <w_q − w0_q, z_i>
  }
  sync();
  let mu2 = P.mu_norm * P.mu_norm;
  let s2 = sig * sig;
  var sums = vec4<f32>(0.0);  // loss, Σ ℓ'²ζ, ‖∇L_S‖², Σ ‖ξ_i‖²
  var maxes = vec4<f32>(0.0, NEG_INF, NEG_INF, NEG_INF);  // signal, noise, γ, ρ̄
  var neg_min = NEG_INF;  // −min ρ̲
  for (var i = lid; i < nn; i += WG) {
    let l1 = ld(O_L1 + i);
    sums.x += logistic(ld(O_MARG + i));
    sums.y += l1 * l1 * ld(O_ZETA + i);
    sums.w += ld(O_XISQ + i);
  }
  for (var q = lid; q < nq; q += WG) {
    maxes.x = max(maxes.x, abs(ld(O_S + q)));
    let dw = state[wb + q * D4].x - rows[w0b + q * D4].x;
    maxes.z = max(maxes.z, sgn(q) * P.mu_norm * dw);
    let a = ld(O_ALPHA + q);
    sums.z += a * a * mu2;
  }
  for (var p = lid; p < nqn; p += WG) {
    let q = p / N;
    let i = p % N;
    maxes.y = max(maxes.y, ld(O_E + p));
    var gq = 0.0;
    var cq = 0.0;
    for (var k = 0u; k < nn; k++) {
      gq += ld(O_BETA + q * N + k) * aux[gb + i * N + k];
      cq += aux[gib + i * N + k] * ld(O_VXI + q * N + k);
    }
    sums.z += s2 * ld(O_BETA + p) * gq;
    // Δw_q's noise part is Σ_i c_i z_i with c = G⁻¹<Δw_q, z>; ρ_i = c_i‖ξ_i‖²/σ_p.
    let rho = sig * aux[gb + i * N + i] * cq;
    if (sgn(q) == aux[yb + i]) {
      maxes.w = max(maxes.w, rho);
    } else {
      neg_min = max(neg_min, -rho);
    }
  }
  let s = reduce4(lid, sums, false);
  let mx = reduce4(lid, maxes, true);
  let mn = reduce4(lid, vec4<f32>(neg_min, 0.0, 0.0, 0.0), true);
  if (lid == 0u) {
    let nf = f32(N);
    let mf = f32(M);
    let penalty = s.y * 4.0 / (mf * mf * 2.0 * nf);
    let lam_t = select(0.0, lam, P.snap_reg_on != 0u);
    var reg = 0.0;
    if (ALGO == ALGO_PEGR) {
      reg = lam_t * penalty;
    } else if (ALGO == ALGO_FGR) {
      reg = lam_t * (P.fgr_scale / 2.0) * s.z;
    }
    let o = (P.snap_slot * P.replicas + rep) * NMET;
    metrics[o] = s.x / nf;
    metrics[o + 1u] = mx.x;
    metrics[o + 2u] = mx.y;
    metrics[o + 3u] = 0.0;  // test_accuracy: counted by test_acc
    metrics[o + 4u] = s.z;
    metrics[o + 5u] = reg;
    metrics[o + 6u] = 2.0 * penalty;
    metrics[o + 7u] = mx.z;
    metrics[o + 8u] = mx.w;
    metrics[o + 9u] = -mn.x;
    metrics[o + 10u] = lam * (s.w / nf) / mf;
  }
}

fn set_replica(r: u32) {
  nq = Q + P.zero;
  nn = N + P.zero;
  nd4 = D4 + P.zero;
  nqn = QN + P.zero;
  nqd = Q * D4 + P.zero;
  rep = r;
  let dset = select(0u, r, DATA_PER_REPLICA);
  wb = r * Q * D4;
  zb = dset * N * D4;
  yb = dset * N;
  gb = P.off_g + dset * N * N;
  gib = P.off_gi + dset * N * N;
  sb = r * SCR;
  lr = aux[P.off_h + 4u * r];
  sig = aux[P.off_h + 4u * r + 1u];
  lam = aux[P.off_h + 4u * r + 2u];
}

@compute @workgroup_size(WG)
fn advance(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let r = wid.x + wid.y * P.groups_x;
  if (r >= P.replicas) { return; }
  set_replica(r);
  // A diverged replica stays frozen at the state that diverged.
  if (lid == 0u) { sh_dead = atomicLoad(&flags[4u * r]); }
  if (workgroupUniformLoad(&sh_dead) != 0u) { return; }
  for (var i = lid; i < nn; i += WG) {
    st(O_XISQ + i, sig * sig * aux[gb + i * N + i]);
  }
  sync();

  let reg = P.reg_on != 0u && lam > 0.0;
  var bad_at = 0u;
  for (var j = 0u; j < P.steps; j++) {
    forward(lid);
    if (ALGO == ALGO_FGR && reg) {
      fgr_direction(lid);
    } else {
      direction(lid, O_ALPHA, O_BETA, ALGO == ALGO_PEGR && reg);
    }
    sync();
    update(lid);
    storageBarrier();
    if (workgroupUniformLoad(&sh_bad) != 0u) {
      bad_at = j + 1u;
      break;
    }
  }

  if (bad_at != 0u) {
    if (lid == 0u) {
      atomicStore(&flags[4u * r + 1u], bad_at);
      atomicStore(&flags[4u * r], P.seq);
    }
  } else if (P.snap_slot != NO_SNAP) {
    write_metrics(lid);
  }
  if (canary_cut_short() && lid == 0u) { atomicStore(&flags[4u * r + 2u], P.seq); }
}

// Test points of replica y + z·groups_x, block x: y·f(W, [yμ, σ_p z]) > 0 counted.
@compute @workgroup_size(WGT)
fn test_acc(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let r = wid.y + wid.z * P.groups_x;
  if (r >= P.replicas || P.snap_slot == NO_SNAP) { return; }
  set_replica(r);
  let dset = select(0u, r, DATA_PER_REPLICA);
  let t = wid.x * WGT + lid;
  if (t < NT) {
    let yt = aux[P.off_yt + dset * NT + t];
    let zo = P.off_zt + (dset * NT + t) * D4;
    var f = 0.0;
    for (var q = 0u; q < nq; q++) {
      let wo = wb + q * D4;
      var acc = vec4<f32>(0.0);
      for (var k = 0u; k < nd4; k++) {
        acc += state[wo + k] * rows[zo + k];
      }
      let a = relu(yt * P.mu_norm * state[wo].x);
      let b = relu(sig * hsum(acc));
      f += sgn(q) * (a * a + b * b);
    }
    if (yt * f > 0.0) { atomicAdd(&sh_count, 1u); }
  }
  workgroupBarrier();
  if (lid == 0u) {
    atomicAdd(&flags[P.off_cnt + P.snap_slot * P.replicas + r], atomicLoad(&sh_count));
  }
  if (canary_cut_short() && lid == 0u) { atomicStore(&flags[4u * r + 2u], P.seq); }
}
