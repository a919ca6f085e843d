// Test probe for philox.wgsl (the host prepends it): for each request, one Philox block and
// every transform of its words, so test/rng_webgpu_test.ts can compare them with the TS.
//
// Request q (2 × vec4<u32>): (seed, replica, step, stream), (block, n, 0, 0).
// Output q (20 u32): words w0..w3 | uniform24(w_k) as f32 bits | normals 4b..4b+3 as f32
// bits | uniform_index(w_k, n) | rademacher(w_k) as f32 bits.

@group(0) @binding(0) var<storage, read> requests: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> results: array<u32>;

const PROBE_STRIDE: u32 = 20u;

@compute @workgroup_size(64)
fn probe(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q = gid.x;
  if (q >= arrayLength(&requests) / 2u) {
    return;
  }
  let a = requests[2u * q];
  let b = requests[2u * q + 1u];
  let w = philox_block(a.x, a.y, a.z, a.w, b.x);
  let z = normals4(a.x, a.y, a.z, a.w, b.x);
  let base = q * PROBE_STRIDE;
  for (var k = 0u; k < 4u; k++) {
    results[base + k] = w[k];
    results[base + 4u + k] = bitcast<u32>(uniform24(w[k]));
    results[base + 8u + k] = bitcast<u32>(z[k]);
    results[base + 12u + k] = uniform_index(w[k], b.y);
    results[base + 16u + k] = bitcast<u32>(rademacher(w[k]));
  }
}
