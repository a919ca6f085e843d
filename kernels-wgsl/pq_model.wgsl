// The P/Q kernel of `large-lr` and `label-noise-anneal` (server/experiments/pq_model.ts,
// large_lr.ts, label_noise_anneal.ts), the WGSL twin of kernels-as/pq_model.ts: one
// workgroup per replica advances it by P.steps updates of the block-diagonal two-ReLU network
// f(x) = Σ a_j ReLU(W_j·x1) + Σ b_j ReLU(V_j·x2), float32 throughout. The kernel only trains;
// at a snapshot it copies the weights into `snaps[slot]` and counts the activation flips
// against the stored pattern, and the host (server/engine/webgpu/pq_model.ts) evaluates every
// other metric in float64 with the reference's own code, as the wasm session does.
//
// Algorithms (ALGO): 0 large-then-small, 1 small, 2 small-preact-noise (full-batch GD, weight
// decay, Gaussian gradient noise: U ← (1 − γλ)U − γ(∇L̂ + τ_ξ ξ)); 3 lnsgd-ls, 4 lnsgd-s
// (batch-1 SGD, label flipped with probability δ); 5 fbgd-ls (full-batch GD, clean labels).
// The anneal and the stored activation pattern follow pq_anneal.ts: decided at the start of
// update t from U_t (loss rule: clean training loss ≤ threshold at the check steps; step
// rule: t = anneal_step). Random draws follow the experiments' headers exactly (Philox, key
// (seed, replica), counter step t; normals numbered row-major over the d real columns).
//
// The host prepends, as text: D (d), D4 (⌈d/4⌉: x1, W and V rows are vec4-padded with
// zeros), N, HALF, WG (threads), ALGO, BY_LOSS (loss-threshold anneal), DATA_PER_REPLICA. Loop
// bounds add P.zero (always 0) so that no compiler unrolls loops over the sizes (llvmpipe's
// LLVM does, completely, as pegr.wgsl notes: slow compiles). Schedule points arrive relative
// to the dispatch's first update (NEVER when outside it), so no 64-bit step arithmetic is
// needed here. llvmpipe ends every loop of an invocation once all of them together have run
// 65535 iterations: the host sizes dispatches below that, and the final canary loop reports a
// dispatch cut short anyway.
//
// One full-batch update (algorithms 0–2, 5) of a replica: pre-activations of every
// (example, unit) pair (thread per pair), ℓ and ℓ'·y/N per example (thread per example),
// L̂ (thread 0, in example order), then the gradient, noise, decay and new weights (thread
// per (row, vec4)). An SGD update: the example's pre-activations (thread per unit), f and
// the coefficient (thread 0), the rank-1 update (thread per (row, vec4)); at a loss check, the
// anneal step or the pattern step it first runs the full clean forward pass. A non-finite new
// weight marks the replica diverged at the step; a diverged replica is frozen.

const NO_SNAP: u32 = 0xFFFFFFFFu;
const NEVER: u32 = 0xFFFFFFFFu;
const ALGO_SMALL_PREACT: u32 = 2u;
const ALGO_LNSGD_LS: u32 = 3u;
const ALGO_LNSGD_S: u32 = 4u;
const ALGO_FBGD_LS: u32 = 5u;
const STREAM_XI_W: u32 = 0u;
const STREAM_XI_V: u32 = 1u;
const STREAM_PREACT: u32 = 2u;
const STREAM_SGD: u32 = 3u;
const M: u32 = 2u * HALF;
const NH: u32 = N * HALF;
const FULL_BATCH: bool = ALGO != ALGO_LNSGD_LS && ALGO != ALGO_LNSGD_S;
const ANNEALING: bool = ALGO == 0u || ALGO == ALGO_LNSGD_LS || ALGO == ALGO_FBGD_LS;
// Per-replica hyper-parameters in `aux` (rows of 8): η1, η2, 1 − η1λ, 1 − η2λ, τ_ξ, τ_pre,
// threshold, flip cut K (an integer ≤ 2^24: the label flips iff (w1 >> 8) < K ⇔ uniform24 < δ).
const H_ETA1: u32 = 0u;
const H_ETA2: u32 = 1u;
const H_DECAY1: u32 = 2u;
const H_DECAY2: u32 = 3u;
const H_TAU_XI: u32 = 4u;
const H_TAU_PRE: u32 = 5u;
const H_THRESHOLD: u32 = 6u;
const H_FLIP_CUT: u32 = 7u;
// Scratch per replica (floats).
const O_HW: u32 = 0u;              // [N][HALF] pre-activations of the W block
const O_HV: u32 = NH;              // [N][HALF] of the V block
const O_C: u32 = 2u * NH;          // [N] ℓ'(y f)·y/N
const O_L: u32 = O_C + N;          // [N] ℓ(y f)
const O_PRE: u32 = O_L + N;        // [M] pre-activation noise of the step
const O_SW: u32 = O_PRE + M;       // [HALF] one example's pre-activations (SGD)
const O_SV: u32 = O_SW + HALF;     // [HALF]
const SCR: u32 = O_SV + HALF;

struct Params {
  steps: u32,         // updates in this dispatch (0 for the step-0 snapshot)
  seq: u32,           // dispatch number (≥ 1)
  snap_slot: u32,     // snapshot slot of the state after the last update, or NO_SNAP
  replicas: u32,
  groups_x: u32,      // replica = x + y·groups_x
  canary: u32,        // trip count of the final loop (≥ 1)
  start: u32,         // first update's step t, modulo 2^32 (the Philox counter)
  seed: u32,
  anneal_rel: u32,    // step rule: anneal_step − start, or NEVER
  pattern_rel: u32,   // algorithms without an anneal: pattern step − start, or NEVER
  check_first: u32,   // loss rule: first j with (start + j) % check_every == 0
  check_every: u32,
  noise_until: u32,   // small-preact-noise: updates j < noise_until have pre-activation noise
  off_x2: u32,        // float offsets into `aux`
  off_sub: u32,
  off_a: u32,
  off_b: u32,
  off_h: u32,
  off_anneal: u32,    // word offsets into `flags`
  off_flips: u32,
  zero: u32,          // 0: added to loop bounds
  first_replica: u32, // global index of replica 0 in a shard (RunSpec.firstReplica): Philox key
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;  // x1 [sets][N][D4]
// y [sets][N] | x2 [sets][N][2] | subset [sets][N] | a [R][HALF] | b [R][HALF] | hyper [R][8]
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<vec4<f32>>;  // W [R][HALF][D4] | V
// [R][4] status: (seq, local step) of a divergence, seq of a dispatch cut short, 0 |
// [R][4] anneal: (seq, local step) of the anneal, loss bits, pattern stored | [slot][R] flips
@group(0) @binding(4) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> snaps: array<f32>;  // [slot][R][2][HALF][D]
@group(0) @binding(6) var<storage, read_write> scratch: array<f32>;  // [R][SCR]
@group(0) @binding(7) var<storage, read_write> pattern: array<u32>;  // [R][N][M]

var<workgroup> sh_bad: atomic<u32>;
var<workgroup> sh_dead: u32;
var<workgroup> sh_count: atomic<u32>;
var<workgroup> sh_loss: f32;
var<workgroup> sh_c: f32;
var<workgroup> sh_annealed: u32;
var<workgroup> sh_stored: u32;

var<private> rep: u32;
var<private> nn: u32;
var<private> nh: u32;
var<private> nhalf: u32;
var<private> nd4: u32;
var<private> nhd: u32;
var<private> wb: u32;   // this replica's W rows (vec4 units); V at vb
var<private> vb: u32;
var<private> xb: u32;   // its data set's x1 rows (vec4 units)
var<private> eb: u32;   // its data set's first example (float index base of y and subset)
var<private> sb: u32;   // its scratch base
var<private> ab: u32;   // its a and b
var<private> bb: u32;
var<private> hb: u32;   // its hyper row

fn sync() {
  storageBarrier();
  workgroupBarrier();
}

fn sub_of(i: u32) -> u32 { return u32(aux[P.off_sub + eb + i]); }
fn has_p(s: u32) -> bool { return s != 1u; }
fn has_q(s: u32) -> bool { return s != 0u; }
fn hyper(k: u32) -> f32 { return aux[hb + k]; }

// Normals e0 .. e0+3 of one stream (counts past the end are the caller's to mask): the two
// Philox blocks that cover them.
fn normals_at(step: u32, stream: u32, e0: u32) -> vec4<f32> {
  let b0 = e0 >> 2u;
  let lo = normals4(P.seed, P.first_replica + rep, step, stream, b0);
  let sh = e0 & 3u;
  if (sh == 0u) { return lo; }
  let hi = normals4(P.seed, P.first_replica + rep, step, stream, b0 + 1u);
  var both = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
  return vec4<f32>(both[sh], both[sh + 1u], both[sh + 2u], both[sh + 3u]);
}

// Pre-activations of every training example into O_HW, O_HV (with the step's pre-activation
// noise when `pre`), then ℓ(y f) and ℓ'(y f)·y/N per example, then their mean into sh_loss
// (a uniform value on return). Ends on a barrier.
fn forward_all(lid: u32, pre: bool) {
  for (var p = lid; p < nh; p += WG) {
    let i = p / HALF;
    let j = p % HALF;
    let s = sub_of(i);
    var h = 0.0;
    if (has_p(s)) {
      let wo = wb + j * D4;
      let xo = xb + i * D4;
      var acc = vec4<f32>(0.0);
      for (var k = 0u; k < nd4; k++) {
        acc += state[wo + k] * rows[xo + k];
      }
      h = hsum(acc);
    }
    var hv = 0.0;
    if (has_q(s)) {
      let v = state[vb + j * D4];
      let xo = P.off_x2 + 2u * (eb + i);
      hv = v.x * aux[xo] + v.y * aux[xo + 1u];
    }
    if (pre) {
      h += scratch[sb + O_PRE + j];
      hv += scratch[sb + O_PRE + HALF + j];
    }
    scratch[sb + O_HW + p] = h;
    scratch[sb + O_HV + p] = hv;
  }
  sync();
  let inv = 1.0 / f32(N);
  for (var i = lid; i < nn; i += WG) {
    var f = 0.0;
    for (var j = 0u; j < nhalf; j++) {
      let h = scratch[sb + O_HW + i * HALF + j];
      let hv = scratch[sb + O_HV + i * HALF + j];
      if (h > 0.0) { f += aux[ab + j] * h; }
      if (hv > 0.0) { f += aux[bb + j] * hv; }
    }
    let y = aux[eb + i];
    let z = y * f;
    scratch[sb + O_L + i] = logistic(z);
    scratch[sb + O_C + i] = logistic_d1(z) * y * inv;
  }
  sync();
  if (lid == 0u) {
    var loss = 0.0;
    for (var i = 0u; i < nn; i++) { loss += scratch[sb + O_L + i]; }
    sh_loss = loss * inv;
  }
  workgroupBarrier();
}

// The clean activation pattern of the (clean) pre-activations in scratch, pq_model.ts layout.
fn store_pattern(lid: u32) {
  for (var p = lid; p < nh; p += WG) {
    let i = p / HALF;
    let j = p % HALF;
    let s = sub_of(i);
    let o = (rep * N + i) * M;
    pattern[o + j] = select(0u, 1u, has_p(s) && scratch[sb + O_HW + p] >= 0.0);
    pattern[o + HALF + j] = select(0u, 1u, has_q(s) && scratch[sb + O_HV + p] >= 0.0);
  }
  if (lid == 0u) {
    atomicStore(&flags[P.off_anneal + 4u * rep + 3u], 1u);
    sh_stored = 1u;
  }
}

// U ← d·U − γ(G + τ_ξ ξ) (noisy = algorithms 0–2) or U ← U − γG (fbgd-ls), G = ∇L̂ from the
// scratch of forward_all; thread per (row, vec4).
fn full_batch_update(lid: u32, t: u32, gamma: f32, decay: f32, noisy: bool) {
  let tau = hyper(H_TAU_XI);
  for (var it = lid; it < nhd; it += WG) {
    let j = it / D4;
    let k = it % D4;
    // W block. Examples without P have x1 = 0 and those without Q x2 = 0: they add ±0, so
    // the 1(h ≥ 0) test alone gives the reference's sums.
    var g = vec4<f32>(0.0);
    for (var i = 0u; i < nn; i++) {
      if (scratch[sb + O_HW + i * HALF + j] >= 0.0) {
        g += scratch[sb + O_C + i] * rows[xb + i * D4 + k];
      }
    }
    g = aux[ab + j] * g;
    // V block: the data meet columns 0 and 1 only.
    var gv = vec4<f32>(0.0);
    if (k == 0u) {
      var g0 = 0.0;
      var g1 = 0.0;
      for (var i = 0u; i < nn; i++) {
        if (scratch[sb + O_HV + i * HALF + j] >= 0.0) {
          let c = scratch[sb + O_C + i];
          let xo = P.off_x2 + 2u * (eb + i);
          g0 += c * aux[xo];
          g1 += c * aux[xo + 1u];
        }
      }
      gv = aux[bb + j] * vec4<f32>(g0, g1, 0.0, 0.0);
    }
    var w = state[wb + it];
    var v = state[vb + it];
    if (noisy) {
      let col = 4u * k;
      let live = vec4<f32>(vec4<u32>(col, col + 1u, col + 2u, col + 3u) < vec4<u32>(D));
      let e0 = j * D + col;
      let xw = normals_at(t, STREAM_XI_W, e0) * live;
      let xv = normals_at(t, STREAM_XI_V, e0) * live;
      w = decay * w - gamma * (g + tau * xw);
      v = decay * v - gamma * (gv + tau * xv);
    } else {
      w = w - gamma * g;
      v = v - gamma * gv;
    }
    state[wb + it] = w;
    state[vb + it] = v;
    if (non_finite4(w) || non_finite4(v)) { atomicOr(&sh_bad, 1u); }
  }
}

// One label-noise SGD update with learning rate γ on example i, label sign σ.
fn sgd_update(lid: u32, t: u32, gamma: f32) {
  let w4 = philox_block(P.seed, P.first_replica + rep, t, STREAM_SGD, 0u);
  let i = uniform_index(w4.x, N);
  let flip = f32(w4.y >> 8u) < hyper(H_FLIP_CUT);
  let y = select(1.0, -1.0, flip) * aux[eb + i];
  let s = sub_of(i);
  let x2o = P.off_x2 + 2u * (eb + i);
  for (var j = lid; j < nhalf; j += WG) {
    var h = 0.0;
    if (has_p(s)) {
      var acc = vec4<f32>(0.0);
      for (var k = 0u; k < nd4; k++) {
        acc += state[wb + j * D4 + k] * rows[xb + i * D4 + k];
      }
      h = hsum(acc);
    }
    var hv = 0.0;
    if (has_q(s)) {
      let v = state[vb + j * D4];
      hv = v.x * aux[x2o] + v.y * aux[x2o + 1u];
    }
    scratch[sb + O_SW + j] = h;
    scratch[sb + O_SV + j] = hv;
  }
  sync();
  if (lid == 0u) {
    var f = 0.0;
    for (var j = 0u; j < nhalf; j++) {
      let h = scratch[sb + O_SW + j];
      let hv = scratch[sb + O_SV + j];
      if (h > 0.0) { f += aux[ab + j] * h; }
      if (hv > 0.0) { f += aux[bb + j] * hv; }
    }
    sh_c = -gamma * logistic_d1(y * f) * y;
  }
  let c = workgroupUniformLoad(&sh_c);
  for (var it = lid; it < nhd; it += WG) {
    let j = it / D4;
    let k = it % D4;
    if (has_p(s) && scratch[sb + O_SW + j] >= 0.0) {
      let w = state[wb + it] + (c * aux[ab + j]) * rows[xb + i * D4 + k];
      state[wb + it] = w;
      if (non_finite4(w)) { atomicOr(&sh_bad, 1u); }
    }
    if (k == 0u && has_q(s) && scratch[sb + O_SV + j] >= 0.0) {
      let cb = c * aux[bb + j];
      var v = state[vb + it];
      v.x += cb * aux[x2o];
      v.y += cb * aux[x2o + 1u];
      state[vb + it] = v;
      if (non_finite4(v)) { atomicOr(&sh_bad, 1u); }
    }
  }
}

// Marks the replica annealed at local step j with the checked loss; stores its pattern from
// the clean pre-activations in scratch.
fn anneal(lid: u32, j: u32, loss: f32) {
  if (lid == 0u) {
    let o = P.off_anneal + 4u * rep;
    atomicStore(&flags[o + 1u], j);
    atomicStore(&flags[o + 2u], bitcast<u32>(loss));
    atomicStore(&flags[o], P.seq);
    sh_annealed = 1u;
  }
  store_pattern(lid);
}

// The weights into snaps[slot] (real columns) and the activation flips against the pattern.
fn write_snapshot(lid: u32) {
  let base = (P.snap_slot * P.replicas + rep) * 2u * HALF * D;
  let vo = base + HALF * D;
  for (var it = lid; it < nhd; it += WG) {
    let j = it / D4;
    let k = it % D4;
    let w = state[wb + it];
    let v = state[vb + it];
    for (var c = 0u; c < 4u; c++) {
      let col = 4u * k + c;
      if (col < D) {
        snaps[base + j * D + col] = w[c];
        snaps[vo + j * D + col] = v[c];
      }
    }
  }
  if (workgroupUniformLoad(&sh_stored) != 0u) {
    forward_all(lid, false);
    var count = 0u;
    for (var p = lid; p < nh; p += WG) {
      let i = p / HALF;
      let j = p % HALF;
      let s = sub_of(i);
      let o = (rep * N + i) * M;
      if (has_p(s) && select(0u, 1u, scratch[sb + O_HW + p] >= 0.0) != pattern[o + j]) {
        count += 1u;
      }
      if (has_q(s) && select(0u, 1u, scratch[sb + O_HV + p] >= 0.0) != pattern[o + HALF + j]) {
        count += 1u;
      }
    }
    atomicAdd(&sh_count, count);
    workgroupBarrier();
    if (lid == 0u) {
      atomicStore(&flags[P.off_flips + P.snap_slot * P.replicas + rep], atomicLoad(&sh_count));
    }
  } else if (lid == 0u) {
    atomicStore(&flags[P.off_flips + P.snap_slot * P.replicas + rep], 0u);
  }
}

fn set_replica(r: u32) {
  rep = r;
  nn = N + P.zero;
  nh = NH + P.zero;
  nhalf = HALF + P.zero;
  nd4 = D4 + P.zero;
  nhd = HALF * D4 + P.zero;
  let dset = select(0u, r, DATA_PER_REPLICA);
  wb = r * HALF * D4;
  vb = P.replicas * HALF * D4 + wb;
  xb = dset * N * D4;
  eb = dset * N;
  sb = r * SCR;
  ab = P.off_a + r * HALF;
  bb = P.off_b + r * HALF;
  hb = P.off_h + 8u * r;
}

@compute @workgroup_size(WG)
fn advance(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let r = wid.x + wid.y * P.groups_x;
  if (r >= P.replicas) { return; }
  set_replica(r);
  if (lid == 0u) {
    sh_dead = atomicLoad(&flags[4u * r]);
    sh_annealed = select(0u, 1u, atomicLoad(&flags[P.off_anneal + 4u * r]) != 0u);
    sh_stored = atomicLoad(&flags[P.off_anneal + 4u * r + 3u]);
  }
  if (workgroupUniformLoad(&sh_dead) != 0u) { return; }

  var bad_at = 0u;
  for (var j = 0u; j < P.steps; j++) {
    let t = P.start + j;
    let check = BY_LOSS && j >= P.check_first && (j - P.check_first) % P.check_every == 0u;
    let annealed = workgroupUniformLoad(&sh_annealed) != 0u;
    let decide = ANNEALING && !annealed && ((BY_LOSS && check) || (!BY_LOSS && j == P.anneal_rel));
    let store = !ANNEALING && j == P.pattern_rel;
    if (FULL_BATCH) {
      let pre = ALGO == ALGO_SMALL_PREACT && j < P.noise_until;
      if (pre) {
        let tau = hyper(H_TAU_PRE);
        for (var u = lid; u < (M + 3u) / 4u + P.zero; u += WG) {
          let z = normals4(P.seed, P.first_replica + rep, t, STREAM_PREACT, u) * tau;
          for (var c = 0u; c < 4u; c++) {
            if (4u * u + c < M) { scratch[sb + O_PRE + 4u * u + c] = z[c]; }
          }
        }
        sync();
      }
      forward_all(lid, pre);
    } else if (decide || store) {
      forward_all(lid, false);
    }
    let loss = workgroupUniformLoad(&sh_loss);
    if (decide && (!BY_LOSS || loss <= hyper(H_THRESHOLD))) {
      anneal(lid, j, select(0.0, loss, BY_LOSS));
    } else if (store) {
      store_pattern(lid);
    }
    sync();
    let now = workgroupUniformLoad(&sh_annealed) != 0u;
    let small = !ANNEALING || now;
    let gamma = select(hyper(H_ETA1), hyper(H_ETA2), small);
    if (ALGO <= ALGO_SMALL_PREACT) {
      full_batch_update(lid, t, gamma, select(hyper(H_DECAY1), hyper(H_DECAY2), small), true);
    } else if (ALGO == ALGO_FBGD_LS) {
      full_batch_update(lid, t, gamma, 1.0, false);
    } else {
      sgd_update(lid, t, gamma);
    }
    sync();
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
    write_snapshot(lid);
  }
  if (canary_cut_short() && lid == 0u) { atomicStore(&flags[4u * r + 2u], P.seq); }
}
