// linear-label-noise (server/experiments/linear_label_noise_*.ts): f(x) = aᵀWx, one workgroup
// per replica advances it by P.steps updates per dispatch. Random draws follow the protocol
// in linear_label_noise_setup.ts, so the noise is the reference's bit for bit.
//
// The host (server/engine/webgpu/linear_label_noise.ts) prepends, as text:
//   const M, D, N (train rows, ≥ 1), NT (test rows), WG (threads, a power of two),
//   NPT = ⌈M/WG⌉ (neurons per thread), NB = ⌈D/4⌉ (normal blocks of a sample), CH (chunks
//   of the θ reduction), SH_TP (its partial sums), ONLINE, GAUSSIAN, DATA_PER_REPLICA,
//   INIT_PER_REPLICA, offsets OFF_Y, OFF_XT, OFF_YT, OFF_STAR (into `data`) and OFF_A0,
//   OFF_C0 (into `init`), then kernels-wgsl/philox.wgsl.
// The host also cuts dispatches at every change of step kind (the switch to GD) and of the
// periodic noise, so P.kind and P.noise_on are constant within a dispatch.
//
// Thread lid owns neurons i = lid + q·WG (q < NPT). W is stored [D][M] per replica, so
// neighbouring threads read neighbouring words. An SGD step:
//   A  the sample x_t into sh_x (double-buffered by step parity, so a step may start while
//      slow threads still update from the previous sample) and its label y_t;
//   B  h_i = w_iᵀx for own neurons, f = Σ a_i h_i by a tree reduction (barriers);
//      a non-finite f means the state is not finite: the replica diverged at this step;
//   C  r = f − y − ε; w_i −= ηr a_i x, a_i −= ηr h_i, S_i += ‖Δw_i‖² − Δa_i² (Kahan).
// Threads touch only their own neurons in B and C, so no barrier is needed between steps
// beyond A's and B's. GD and oscillation steps reduce θ = Σ a_i w_i (read across neurons,
// hence a storage barrier first), form the gradient g and update every neuron.
//
// llvmpipe ends all loops of an invocation after 65535 iterations in total, silently; the
// host sizes dispatches below that, and a last loop with a runtime trip count (the canary)
// tells it if a dispatch was cut short anyway.

const KIND_SGD: u32 = 0u;
const KIND_GD: u32 = 1u;
const KIND_OSC: u32 = 2u;
const STREAM_ONLINE: u32 = 6u;
const STREAM_INDEX: u32 = 7u;
const STREAM_NOISE: u32 = 8u;
const STREAM_CHAIN: u32 = 9u;
const DATA_REPLICA: u32 = 0xFFFFFFFFu;
const NO_SNAP: u32 = 0xFFFFFFFFu;
const NMET: u32 = 16u;  // floats per (slot, replica) in `metrics`; 14 used
const STATE: u32 = D * M + 3u * M;  // W [D][M] | a [M] | S [M] | Kahan compensation [M]

struct Params {
  step_lo: u32,    // absolute step of the first update, modulo 2^32 (Philox counter c0)
  steps: u32,      // updates in this dispatch (0 for the step-0 snapshot)
  seq: u32,        // dispatch number (≥ 1), stored with a divergence so the host can date it
  snap_slot: u32,  // metrics slot for the state after the last update, or NO_SNAP
  seed: u32,
  replicas: u32,
  groups_x: u32,   // replica = workgroup_id.x + workgroup_id.y · groups_x
  kind: u32,       // KIND_* of every step of this dispatch
  noise_on: u32,   // label noise on in this dispatch (periodic)
  frame: u32,      // write the per-neuron frame after the last update
  canary: u32,     // trip count of the final loop (any value ≥ 1), see below
  first_replica: u32,  // global index of replica 0 in a shard (RunSpec.firstReplica)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> data: array<f32>;  // X | y | Xtest | ytest | θ*
@group(0) @binding(2) var<storage, read> init: array<f32>;  // W0 [sets][D][M] | a0 [R][M] | c0 [R][M]
@group(0) @binding(3) var<storage, read> hyper: array<vec4<f32>>;  // (lr, σ, chain c, 0)
@group(0) @binding(4) var<storage, read_write> state: array<f32>;  // [R][STATE]
// (seq, local step) of a divergence; .z = seq of a dispatch whose canary came up short.
@group(0) @binding(5) var<storage, read_write> status: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> metrics: array<f32>;  // [slot][R][NMET]
@group(0) @binding(7) var<storage, read_write> frame: array<f32>;  // [R][3M]
@group(0) @binding(8) var<storage, read_write> scratch: array<f32>;  // [R][N]: GD residuals

var<workgroup> sh_x: array<f32, 2 * D>;
var<workgroup> sh_theta: array<f32, D>;
var<workgroup> sh_g: array<f32, D>;
var<workgroup> sh_tp: array<f32, SH_TP>;
var<workgroup> sh_part: array<vec4<f32>, WG>;
var<workgroup> sh_dead: u32;
var<workgroup> sh_flag: f32;

var<private> base: u32;  // this replica's offset in `state`
var<private> rep: u32;
var<private> dset: u32;  // data set of this replica
var<private> hv: array<f32, NPT>;  // h_i of own neurons (SGD)

fn w_at(k: u32, i: u32) -> u32 { return base + k * M + i; }
fn a_at(i: u32) -> u32 { return base + D * M + i; }
fn s_at(i: u32) -> u32 { return base + D * M + M + i; }
fn sc_at(i: u32) -> u32 { return base + D * M + 2u * M + i; }
fn star(k: u32) -> f32 { return data[OFF_STAR + dset * D + k]; }

fn reduce_sum4(lid: u32, v: vec4<f32>) -> vec4<f32> {
  sh_part[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { sh_part[lid] += sh_part[lid + s]; }
    workgroupBarrier();
  }
  // A uniform result: callers branch on it around barriers.
  let r = workgroupUniformLoad(&sh_part[0]);
  workgroupBarrier();
  return r;
}

fn reduce_max4(lid: u32, v: vec4<f32>) -> vec4<f32> {
  sh_part[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { sh_part[lid] = max(sh_part[lid], sh_part[lid + s]); }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&sh_part[0]);
  workgroupBarrier();
  return r;
}

// θ_k = Σ_i a_i w_ik into sh_theta: thread (k, chunk) sums every CH-th neuron of its chunk.
fn compute_theta(lid: u32) {
  storageBarrier();
  workgroupBarrier();
  for (var idx = lid; idx < D * CH; idx += WG) {
    let k = idx % D;
    let ch = idx / D;
    var acc = 0.0;
    for (var i = ch; i < M; i += CH) { acc += state[a_at(i)] * state[w_at(k, i)]; }
    sh_tp[idx] = acc;
  }
  workgroupBarrier();
  for (var k = lid; k < D; k += WG) {
    var acc = 0.0;
    for (var ch = 0u; ch < CH; ch++) { acc += sh_tp[ch * D + k]; }
    sh_theta[k] = acc;
  }
  workgroupBarrier();
}

// The sample of step t into sh_x[xo..]; returns its clean label (every thread gets it).
fn draw_sample(lid: u32, t: u32, xo: u32) -> f32 {
  let ds = select(P.seed, P.seed + P.first_replica + rep, DATA_PER_REPLICA);
  if (ONLINE) {
    for (var b = lid; b < NB; b += WG) {
      let z = normals4(ds, DATA_REPLICA, t, STREAM_ONLINE, b);
      for (var c = 0u; c < 4u; c++) {
        if (4u * b + c < D) { sh_x[xo + 4u * b + c] = z[c]; }
      }
    }
    workgroupBarrier();
    var y = 0.0;
    for (var k = 0u; k < D; k++) { y += star(k) * sh_x[xo + k]; }
    return y;
  }
  let xi = uniform_index(philox_block(ds, DATA_REPLICA, t, STREAM_INDEX, 0u).x, N);
  let row = dset * N + xi;
  for (var k = lid; k < D; k += WG) { sh_x[xo + k] = data[row * D + k]; }
  workgroupBarrier();
  return data[OFF_Y + row];
}

fn label_noise(t: u32, sigma: f32) -> f32 {
  if (sigma == 0.0 || P.noise_on == 0u) { return 0.0; }
  let w = philox_block(P.seed, P.first_replica + rep, t, STREAM_NOISE, 0u);
  if (GAUSSIAN) { return sigma * box_muller(w.x, w.y).x; }
  return sigma * rademacher(w.x);
}

fn kahan_add(i: u32, inc: f32) {
  let y = inc - state[sc_at(i)];
  let s = state[s_at(i)];
  let t = s + y;
  state[sc_at(i)] = (t - s) - y;
  state[s_at(i)] = t;
}

// One SGD step (eqs. 15–16); false if the state before it is not finite.
fn sgd_step(lid: u32, t: u32, j: u32, lr: f32, sigma: f32) -> bool {
  let xo = (j & 1u) * D;
  let y = draw_sample(lid, t, xo);
  var fpart = 0.0;
  for (var q = 0u; q < NPT; q++) {
    let i = lid + q * WG;
    if (i < M) {
      var h = 0.0;
      for (var k = 0u; k < D; k++) { h += state[w_at(k, i)] * sh_x[xo + k]; }
      hv[q] = h;
      fpart += state[a_at(i)] * h;
    }
  }
  let f = reduce_sum4(lid, vec4<f32>(fpart, 0.0, 0.0, 0.0)).x;
  if (non_finite(f)) { return false; }
  let lrr = lr * (f - y - label_noise(t, sigma));
  var xx = 0.0;
  for (var k = 0u; k < D; k++) { xx += sh_x[xo + k] * sh_x[xo + k]; }
  for (var q = 0u; q < NPT; q++) {
    let i = lid + q * WG;
    if (i < M) {
      let ai = state[a_at(i)];
      let cw = lrr * ai;
      for (var k = 0u; k < D; k++) { state[w_at(k, i)] -= cw * sh_x[xo + k]; }
      let da = -lrr * hv[q];
      state[a_at(i)] = ai + da;
      kahan_add(i, cw * cw * xx - da * da);
    }
  }
  return true;
}

// g = ∇_θ L at sh_theta into sh_g: the n-point mean, or θ − θ* online. Returns ‖g‖².
fn compute_gradient(lid: u32) -> f32 {
  if (ONLINE) {
    for (var k = lid; k < D; k += WG) { sh_g[k] = sh_theta[k] - star(k); }
  } else {
    let so = rep * N;
    for (var jr = lid; jr < N; jr += WG) {
      let row = dset * N + jr;
      var res = -data[OFF_Y + row];
      for (var k = 0u; k < D; k++) { res += sh_theta[k] * data[row * D + k]; }
      scratch[so + jr] = res;
    }
    storageBarrier();
    workgroupBarrier();
    for (var k = lid; k < D; k += WG) {
      var acc = 0.0;
      for (var jr = 0u; jr < N; jr++) { acc += scratch[so + jr] * data[(dset * N + jr) * D + k]; }
      sh_g[k] = acc / f32(N);
    }
  }
  workgroupBarrier();
  var gg = 0.0;
  for (var k = 0u; k < D; k++) { gg += sh_g[k] * sh_g[k]; }
  return gg;
}

// One GD (eqs. 47–50) or oscillation (eqs. 5–6) step; false if the state before it is not finite.
fn gd_step(lid: u32, t: u32, lr: f32, c: f32) -> bool {
  compute_theta(lid);
  if (lid == 0u) {
    var tsum = 0.0;
    for (var k = 0u; k < D; k++) { tsum += sh_theta[k]; }
    sh_flag = tsum;
  }
  if (non_finite(workgroupUniformLoad(&sh_flag))) { return false; }
  let gg = compute_gradient(lid);
  for (var q = 0u; q < NPT; q++) {
    let i = lid + q * WG;
    if (i < M) {
      let ai = state[a_at(i)];
      let cw = lr * ai;
      if (P.kind == KIND_GD) {
        var wg = 0.0;
        for (var k = 0u; k < D; k++) {
          let w = state[w_at(k, i)];
          wg += w * sh_g[k];
          state[w_at(k, i)] = w - cw * sh_g[k];
        }
        let da = -lr * wg;
        state[a_at(i)] = ai + da;
        kahan_add(i, cw * cw * gg - da * da);
      } else {
        for (var k = 0u; k < D; k++) { state[w_at(k, i)] -= cw * sh_g[k]; }
        let words = philox_block(P.seed, P.first_replica + rep, t, STREAM_CHAIN, i >> 7u);
        let bit = (words[(i >> 5u) & 3u] >> (i & 31u)) & 1u;
        state[a_at(i)] = select(select(-c, c, bit == 0u), 0.0, ai != 0.0);
      }
    }
  }
  return true;
}

// The 14 metrics of LINEAR_METRICS, in float32, into metrics[slot].
fn write_metrics(lid: u32, slot: u32) {
  compute_theta(lid);
  var starSq = 0.0;
  var errSq = 0.0;
  for (var k = 0u; k < D; k++) {
    starSq += star(k) * star(k);
    errSq += (sh_theta[k] - star(k)) * (sh_theta[k] - star(k));
  }
  let starNorm = sqrt(starSq);
  let w0base = select(0u, rep, INIT_PER_REPLICA) * D * M;
  var sums = vec4<f32>(0.0);  // ‖w‖, |a|, |cos|, sgn(a)cos
  var raw = 0.0;
  var mx1 = vec4<f32>(-3.4e38);  // −min‖w‖, −min dist, max‖w‖, max|a|
  var mx2 = vec4<f32>(-3.4e38);  // max dist, max |balance|
  for (var q = 0u; q < NPT; q++) {
    let i = lid + q * WG;
    if (i < M) {
      var nn = 0.0;
      var ip = 0.0;
      var dd = 0.0;
      for (var k = 0u; k < D; k++) {
        let w = state[w_at(k, i)];
        nn += w * w;
        ip += w * star(k);
        let e = w - init[w0base + k * M + i];
        dd += e * e;
      }
      let norm = sqrt(nn);
      let ai = state[a_at(i)];
      var cosv = 0.0;
      if (norm > 0.0 && starNorm > 0.0) { cosv = ip / (norm * starNorm); }
      sums += vec4<f32>(norm, abs(ai), abs(cosv), sign(ai) * cosv);
      raw += ip;
      let dist = sqrt(dd);
      let bal = nn - ai * ai - init[OFF_C0 + rep * M + i] - state[s_at(i)];
      mx1 = max(mx1, vec4<f32>(-norm, -dist, norm, abs(ai)));
      mx2 = max(mx2, vec4<f32>(dist, abs(bal), 0.0, 0.0));
    }
  }
  var losses = vec2<f32>(0.0);
  if (!ONLINE) {
    for (var jr = lid; jr < N; jr += WG) {
      let row = dset * N + jr;
      var res = -data[OFF_Y + row];
      for (var k = 0u; k < D; k++) { res += sh_theta[k] * data[row * D + k]; }
      losses.x += 0.5 * res * res;
    }
  }
  for (var jr = lid; jr < NT; jr += WG) {
    let row = dset * NT + jr;
    var res = -data[OFF_YT + row];
    for (var k = 0u; k < D; k++) { res += sh_theta[k] * data[OFF_XT + row * D + k]; }
    losses.y += 0.5 * res * res;
  }
  let s1 = reduce_sum4(lid, sums);
  let s2 = reduce_sum4(lid, vec4<f32>(raw, losses.x, losses.y, 0.0));
  let m1 = reduce_max4(lid, mx1);
  let m2 = reduce_max4(lid, mx2);
  if (lid == 0u) {
    let o = (slot * P.replicas + rep) * NMET;
    let mf = f32(M);
    metrics[o + 0u] = select(s2.y / f32(N), 0.5 * errSq, ONLINE);
    metrics[o + 1u] = s2.z / f32(NT);
    metrics[o + 2u] = s1.x / mf;
    metrics[o + 3u] = -m1.x;
    metrics[o + 4u] = m1.z;
    metrics[o + 5u] = s1.y / mf;
    metrics[o + 6u] = m1.w;
    metrics[o + 7u] = s1.z / mf;
    metrics[o + 8u] = s1.w / mf;
    metrics[o + 9u] = s2.x / mf;
    metrics[o + 10u] = -m1.y;
    metrics[o + 11u] = m2.x;
    metrics[o + 12u] = sqrt(errSq);
    metrics[o + 13u] = m2.y;  // the host writes NaN for oscillation (no balance identity)
  }
}

// [‖w_i‖ | <w_i, θ*> | a_i] of this replica into `frame`.
fn write_frame(lid: u32) {
  for (var q = 0u; q < NPT; q++) {
    let i = lid + q * WG;
    if (i < M) {
      var nn = 0.0;
      var ip = 0.0;
      for (var k = 0u; k < D; k++) {
        let w = state[w_at(k, i)];
        nn += w * w;
        ip += w * star(k);
      }
      let o = rep * 3u * M;
      frame[o + i] = sqrt(nn);
      frame[o + M + i] = ip;
      frame[o + 2u * M + i] = state[a_at(i)];
    }
  }
}

// 1 if some state entry of an own neuron is not finite, summed over the workgroup.
fn count_non_finite(lid: u32) -> f32 {
  var bad = 0.0;
  for (var q = 0u; q < NPT; q++) {
    let i = lid + q * WG;
    if (i < M) {
      var s = state[a_at(i)];
      for (var k = 0u; k < D; k++) { s += state[w_at(k, i)]; }
      if (non_finite(s)) { bad = 1.0; }
    }
  }
  return reduce_sum4(lid, vec4<f32>(bad, 0.0, 0.0, 0.0)).x;
}

@compute @workgroup_size(WG)
fn advance(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // A local, not the private `rep`, decides the early return: private reads are not uniform.
  let r = wid.x + wid.y * P.groups_x;
  if (r >= P.replicas) { return; }
  rep = r;
  base = rep * STATE;
  dset = select(0u, rep, DATA_PER_REPLICA);
  let h = hyper[rep];
  // A diverged replica stays frozen at the state that diverged.
  if (lid == 0u) { sh_dead = status[rep].x; }
  if (workgroupUniformLoad(&sh_dead) != 0u) { return; }

  var bad_at = 0u;
  for (var j = 0u; j < P.steps; j++) {
    let t = P.step_lo + j;  // wraps like the TS counter's `>>> 0`
    var ok: bool;
    if (P.kind == KIND_SGD) {
      ok = sgd_step(lid, t, j, h.x, h.y);
    } else {
      ok = gd_step(lid, t, h.x, h.z);
    }
    // The state before step j is the state after update j − 1 of this dispatch (j ≥ 1: the
    // previous dispatch checked its own last state below).
    if (!ok) {
      bad_at = max(j, 1u);
      break;
    }
  }
  if (bad_at == 0u && P.steps > 0u) {
    storageBarrier();
    if (count_non_finite(lid) > 0.0) { bad_at = P.steps; }
  }
  if (bad_at != 0u) {
    if (lid == 0u) { status[rep] = vec4<u32>(P.seq, bad_at, status[rep].z, 0u); }
  } else {
    if (P.snap_slot != NO_SNAP) { write_metrics(lid, P.snap_slot); }
    if (P.frame != 0u) { write_frame(lid); }
  }
  if (canary_cut_short()) { status[rep].z = P.seq; }
}
