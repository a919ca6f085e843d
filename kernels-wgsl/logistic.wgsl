// ReLU and the logistic loss, shared by the two-layer ReLU kernels (pegr, pq_model).

fn relu(x: f32) -> f32 { return select(0.0, x, x > 0.0); }

// log(1 + x) for x ∈ [0, 1] as 2·atanh(x/(2 + x)): accurate for tiny x, where log(1 + x)
// would lose x to rounding (WGSL has no log1p, and log's error bound near 1 is absolute).
fn log1p01(x: f32) -> f32 {
  let s = x / (2.0 + x);
  let s2 = s * s;
  // s ≤ 1/3: eight terms of the series leave < 1e-9 relative.
  var p = 1.0 / 17.0;
  p = p * s2 + 1.0 / 15.0;
  p = p * s2 + 1.0 / 13.0;
  p = p * s2 + 1.0 / 11.0;
  p = p * s2 + 1.0 / 9.0;
  p = p * s2 + 1.0 / 7.0;
  p = p * s2 + 1.0 / 5.0;
  p = p * s2 + 1.0 / 3.0;
  p = p * s2 + 1.0;
  return 2.0 * s * p;
}

// ℓ(z) = log(1 + e^{−z}) = max(−z, 0) + log1p(e^{−|z|}).
fn logistic(z: f32) -> f32 {
  return max(-z, 0.0) + log1p01(exp(-abs(z)));
}

// ℓ'(z) = −1/(1 + e^z), evaluated without overflow on either side.
fn logistic_d1(z: f32) -> f32 {
  if (z > 0.0) {
    let e = exp(-z);
    return -e / (1.0 + e);
  }
  return -1.0 / (1.0 + exp(z));
}
