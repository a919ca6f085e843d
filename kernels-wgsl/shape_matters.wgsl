// Shape Matters (server/experiments/shape_matters.ts): one workgroup per replica advances
// that replica by P.steps updates, so a dispatch needs no per-step launch or readback.
//
// The host (server/engine/webgpu/shape_matters.ts) prepends, as text:
//   const D, N (sizes), WG (workgroup size), ALGO (ALGO_CODE), RADEMACHER, DATA_PER_REPLICA,
//   WG_STATE (v, r, z in workgroup memory; else v in `state` and r, z in `scratch`),
//   SH_D, SH_N, SH_Z (workgroup array lengths, 1 where unused), then kernels-wgsl/philox.wgsl.
// Making them constants lets the compiler drop the other algorithms' code and unroll loops.
//
// One update t -> t+1, as shapeMattersStep does it (simultaneous update from v[t]):
//   phase A  r_i = <v⊙v, x_i> - y_i          (thread per example)
//            draws of step t (i, j, s; or the d normals)
//   barrier
//   phase B  g_k = (Σ_i r_i x_ik) v_k / n, then v_k -= lr·update_k   (thread per coordinate;
//            a thread reads and writes only its own v_k, so in-place is simultaneous)
//   barrier  (workgroupUniformLoad of the "non-finite" flag, so all threads leave together)
//
// llvmpipe (Mesa's software rasteriser) ends every loop of an invocation, silently, once
// all loops together have run 65535 iterations (LP_MAX_TGSI_LOOP_ITERATIONS). The host
// sizes dispatches below that, and a last loop with a runtime trip count (the canary)
// reports if it happened anyway, so a cut-short dispatch is an error, never wrong numbers.

const ALGO_GD: u32 = 0u;
const ALGO_LABEL: u32 = 1u;
const ALGO_MINIBATCH: u32 = 2u;
const ALGO_GAUSSIAN: u32 = 3u;
const ALGO_LANGEVIN: u32 = 4u;
const STREAM_INDEX: u32 = 0u;
const STREAM_NORMAL: u32 = 1u;
const SUPPORT_THRESHOLD: f32 = 0.01;
const NO_SNAP: u32 = 0xFFFFFFFFu;
const NORMAL_BLOCKS: u32 = (D + 3u) / 4u;

struct Params {
  step_lo: u32,     // absolute step of the first update, modulo 2^32 (Philox counter c0)
  steps: u32,       // updates in this dispatch (0 for the step-0 snapshot)
  seq: u32,         // dispatch number (>= 1), stored with a divergence so the host can date it
  snap_slot: u32,   // metrics slot for the state after the last update, or NO_SNAP
  factor: f32,      // learning-rate schedule factor; the host splits dispatches at milestones
  seed: u32,
  replicas: u32,
  groups_x: u32,    // replica = workgroup_id.x + workgroup_id.y * groups_x (R may exceed 65535)
  canary: u32,      // trip count of the final loop (any value >= 1)
  first_replica: u32, // global index of replica 0 in a shard (RunSpec.firstReplica): Philox key
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;             // [sets × N × D]
@group(0) @binding(2) var<storage, read> labels: array<f32>;        // [v*⊙v* (D) | y (sets × N)]
@group(0) @binding(3) var<storage, read> hyper: array<vec4<f32>>;   // (lr, delta, sigma, lambda)
@group(0) @binding(4) var<storage, read_write> state: array<f32>;   // v, [R × D]
// Per replica: (seq, local step) of a divergence, seq of a dispatch cut short, 0.
@group(0) @binding(5) var<storage, read_write> status: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> metrics: array<vec4<f32>>; // [slot × R]
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>; // [R × (N + D)] if !WG_STATE

var<workgroup> sh_v: array<f32, SH_D>;
var<workgroup> sh_r: array<f32, SH_N>;
var<workgroup> sh_z: array<f32, SH_Z>;
var<workgroup> sh_part: array<vec4<f32>, WG>;
var<workgroup> sh_draw: vec3<u32>;  // (i, j, bits of s) of the current step
var<workgroup> sh_dead: u32;
var<workgroup> sh_bad: atomic<u32>;

var<private> v_base: u32;  // this replica's offset in `state`
var<private> s_base: u32;  // and in `scratch`

fn ld_v(k: u32) -> f32 {
  if (WG_STATE) { return sh_v[k]; }
  return state[v_base + k];
}
fn st_v(k: u32, x: f32) {
  if (WG_STATE) { sh_v[k] = x; } else { state[v_base + k] = x; }
}
fn ld_r(i: u32) -> f32 {
  if (WG_STATE) { return sh_r[i]; }
  return scratch[s_base + i];
}
fn st_r(i: u32, x: f32) {
  if (WG_STATE) { sh_r[i] = x; } else { scratch[s_base + i] = x; }
}
fn ld_z(k: u32) -> f32 {
  if (WG_STATE) { return sh_z[k]; }
  return scratch[s_base + N + k];
}
fn st_z(k: u32, x: f32) {
  if (WG_STATE) { sh_z[k] = x; } else { scratch[s_base + N + k] = x; }
}

fn residual(i: u32, x_off: u32, y_off: u32) -> f32 {
  var f = 0.0;
  let row = x_off + i * D;
  for (var k = 0u; k < D; k++) {
    let vk = ld_v(k);
    f += vk * vk * X[row + k];
  }
  return f - labels[y_off + i];
}

// Phase A's random draws for step `t` (only one thread needs the index draws).
fn draw(lid: u32, rep: u32, t: u32) {
  if (ALGO == ALGO_LABEL || ALGO == ALGO_MINIBATCH) {
    if (lid == WG - 1u) {
      let w = philox_block(P.seed, P.first_replica + rep, t, STREAM_INDEX, 0u);
      var s: f32;
      if (RADEMACHER) { s = rademacher(w.z); } else { s = box_muller(w.z, w.w).x; }
      sh_draw = vec3<u32>(uniform_index(w.x, N), uniform_index(w.y, N), bitcast<u32>(s));
    }
  }
  if (ALGO == ALGO_GAUSSIAN || ALGO == ALGO_LANGEVIN) {
    // Counting blocks down from the last thread puts them on threads with few residuals.
    for (var b = WG - 1u - lid; b < NORMAL_BLOCKS; b += WG) {
      let z = normals4(P.seed, P.first_replica + rep, t, STREAM_NORMAL, b);
      for (var c = 0u; c < 4u; c++) {
        if (4u * b + c < D) { st_z(4u * b + c, z[c]); }
      }
    }
  }
}

// Phase B for coordinate k: the bracket of shapeMattersStep, multiplied by lr.
fn update(k: u32, x_off: u32, h: vec4<f32>, lr: f32) -> f32 {
  var acc = 0.0;
  for (var i = 0u; i < N; i++) {
    acc += ld_r(i) * X[x_off + i * D + k];
  }
  let vk = ld_v(k);
  let g = acc * vk / f32(N);
  var u = g;
  if (ALGO == ALGO_LABEL) {
    let s = bitcast<f32>(sh_draw.z);
    u = g - h.y * s * vk * X[x_off + sh_draw.x * D + k];
  } else if (ALGO == ALGO_MINIBATCH) {
    let gi = ld_r(sh_draw.x) * X[x_off + sh_draw.x * D + k] * vk;
    let gj = ld_r(sh_draw.y) * X[x_off + sh_draw.y * D + k] * vk;
    u = g + h.y * (gi - gj);
  } else if (ALGO == ALGO_GAUSSIAN) {
    u = g + h.z * ld_z(k);
  } else if (ALGO == ALGO_LANGEVIN) {
    // v - lr·∇L + sqrt(2 lr/λ) z, written as the reference writes it.
    u = g - sqrt(2.0 / (lr * h.w)) * ld_z(k);
  }
  return vk - lr * u;
}

// train_loss, test_error, v_norm, support_size of the current v, into metrics[slot].
fn write_metrics(lid: u32, rep: u32, slot: u32, x_off: u32, y_off: u32) {
  var part = vec4<f32>(0.0);
  for (var i = lid; i < N; i += WG) {
    let r = residual(i, x_off, y_off);
    part.x += 0.25 * r * r;
  }
  for (var k = lid; k < D; k += WG) {
    let vk = ld_v(k);
    let sq = vk * vk;
    let e = sq - labels[k];
    part.y += e * e;
    part.z += sq;
    part.w += select(0.0, 1.0, sq > SUPPORT_THRESHOLD);
  }
  sh_part[lid] = part;
  workgroupBarrier();
  if (lid == 0u) {
    var sum = vec4<f32>(0.0);
    for (var t = 0u; t < WG; t++) { sum += sh_part[t]; }
    metrics[slot * P.replicas + rep] = vec4<f32>(sum.x / f32(N), sum.y, sqrt(sum.z), sum.w);
  }
}

@compute @workgroup_size(WG)
fn advance(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let rep = wid.x + wid.y * P.groups_x;
  if (rep >= P.replicas) { return; }
  v_base = rep * D;
  s_base = rep * (N + D);
  let data_set = select(0u, rep, DATA_PER_REPLICA);
  let x_off = data_set * N * D;
  let y_off = D + data_set * N;
  let h = hyper[rep];
  let lr = h.x * P.factor;

  if (WG_STATE) {
    for (var k = lid; k < D; k += WG) { sh_v[k] = state[v_base + k]; }
  }
  // A diverged replica stays frozen at the state that diverged.
  if (lid == 0u) { sh_dead = status[rep].x; }
  if (workgroupUniformLoad(&sh_dead) != 0u) { return; }

  var bad_at = 0u;
  for (var j = 0u; j < P.steps; j++) {
    let t = P.step_lo + j;  // wraps like the TS counter's `>>> 0`
    for (var i = lid; i < N; i += WG) { st_r(i, residual(i, x_off, y_off)); }
    draw(lid, rep, t);
    if (!WG_STATE) { storageBarrier(); }
    workgroupBarrier();
    for (var k = lid; k < D; k += WG) {
      let vk = update(k, x_off, h, lr);
      st_v(k, vk);
      if (non_finite(vk)) { atomicOr(&sh_bad, 1u); }
    }
    if (!WG_STATE) { storageBarrier(); }
    if (workgroupUniformLoad(&sh_bad) != 0u) {
      bad_at = j + 1u;
      break;
    }
  }

  if (WG_STATE) {
    for (var k = lid; k < D; k += WG) { state[v_base + k] = sh_v[k]; }
  }
  if (bad_at != 0u) {
    if (lid == 0u) { status[rep].x = P.seq; status[rep].y = bad_at; }
  } else if (P.snap_slot != NO_SNAP) {
    write_metrics(lid, rep, P.snap_slot, x_off, y_off);
  }
  if (canary_cut_short() && lid == 0u) { status[rep].z = P.seq; }
}
