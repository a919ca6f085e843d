// Float helpers shared by the kernels (the host concatenates this file before a kernel).

// NaN or ±Inf: all exponent bits set. A bit test, because `x != x` may be folded away by
// compilers that assume finite math.
fn non_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7F800000u) == 0x7F800000u;
}

fn non_finite4(x: vec4<f32>) -> bool {
  let e = vec4<u32>(0x7F800000u);
  return any((bitcast<vec4<u32>>(x) & e) == e);
}

// (x + y) + (z + w): the summation order the Wasm kernels use too (kernels-as/simd.ts).
fn hsum(a: vec4<f32>) -> f32 { return (a.x + a.y) + (a.z + a.w); }
