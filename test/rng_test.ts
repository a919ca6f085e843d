/**
 * The TypeScript Philox4x32-10 and its transforms. Known-answer vectors are Random123's
 * (kat_vectors, philox4x32_10); the backends' streams are checked against this version in
 * rng_wasm_test.ts and rng_webgpu_test.ts, so all three agree word for word.
 */
import assert from "node:assert/strict";
import {
  boxMuller,
  mulhi32,
  normals,
  philox4x32,
  philoxBlock,
  rademacher,
  uniform24,
  uniformIndex,
} from "../server/rng/philox.ts";
import { ksCritical001, ksDistance, moments, normalCdf } from "./stats.ts";

const hex = (a: Uint32Array) => [...a].map((x) => x.toString(16).padStart(8, "0")).join(" ");

Deno.test("philox4x32-10 matches the Random123 known-answer vectors", () => {
  assert.equal(hex(philox4x32(0, 0, 0, 0, 0, 0)), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
  const f = 0xffffffff;
  assert.equal(hex(philox4x32(f, f, f, f, f, f)), "408f276d 41c83b0e a20bc7c6 6d5451fd");
  assert.equal(
    hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)),
    "d16cfe09 94fdcceb 5001e420 24126ea1",
  );
});

Deno.test("mulhi32 equals the high word of the exact 64-bit product", () => {
  const words = philoxBlock(1, 2, 3, 4, 0);
  let a = words[0], b = words[1];
  const edge = [0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF];
  for (const x of edge) {
    for (const y of edge) {
      assert.equal(mulhi32(x, y), Number((BigInt(x) * BigInt(y)) >> 32n), `${x}·${y}`);
    }
  }
  for (let i = 0; i < 5000; i++) {
    const w = philoxBlock(9, 9, i, 0, 0);
    a = w[0], b = w[1];
    assert.equal(mulhi32(a, b), Number((BigInt(a) * BigInt(b)) >> 32n));
  }
});

Deno.test("keying: draws depend on every key component and never on call order", () => {
  const base = hex(philoxBlock(123, 0, 10, 0, 0));
  assert.notEqual(hex(philoxBlock(124, 0, 10, 0, 0)), base);
  assert.notEqual(hex(philoxBlock(123, 1, 10, 0, 0)), base);
  assert.notEqual(hex(philoxBlock(123, 0, 11, 0, 0)), base);
  assert.notEqual(hex(philoxBlock(123, 0, 10, 1, 0)), base);
  assert.notEqual(hex(philoxBlock(123, 0, 10, 0, 1)), base);
  philoxBlock(5, 5, 5, 5, 5);
  assert.equal(hex(philoxBlock(123, 0, 10, 0, 0)), base);
});

function sampleWords(count: number): Uint32Array {
  const out = new Uint32Array(count);
  const w = new Uint32Array(4);
  for (let i = 0; i < count; i += 4) {
    philoxBlock(2024, 7, i >>> 2, 3, 0, w);
    out.set(w.subarray(0, Math.min(4, count - i)), i);
  }
  return out;
}

Deno.test("uniform24: in (0,1), within half a float32 ulp of float32, moments and KS", () => {
  const n = 200_000;
  const words = sampleWords(n);
  const u = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    u[i] = uniform24(words[i]);
    assert.ok(u[i] > 0 && u[i] < 1);
    assert.ok(Math.abs(Math.fround(u[i]) - u[i]) <= 2 ** -24 * u[i]);
  }
  const m = moments(u);
  // Standard errors at n = 2e5: mean 6.5e-4, variance 1.9e-4; 5 s.e. margins.
  assert.ok(Math.abs(m.mean - 0.5) < 0.0033, `mean ${m.mean}`);
  assert.ok(Math.abs(m.variance - 1 / 12) < 0.001, `variance ${m.variance}`);
  const d = ksDistance(u, (x) => Math.min(1, Math.max(0, x)));
  assert.ok(d < ksCritical001(n), `KS distance ${d} ≥ ${ksCritical001(n)}`);
});

Deno.test("normals (Box–Muller): moments and Kolmogorov–Smirnov against N(0,1)", () => {
  const n = 200_000;
  const z = new Float64Array(n);
  const block = new Float64Array(100);
  for (let step = 0; step < n / 100; step++) {
    normals(99, 3, step, 1, 100, block);
    z.set(block, step * 100);
  }
  const m = moments(z);
  // Standard errors at n = 2e5: mean 0.0022, variance 0.0032, skewness 0.0055, kurtosis 0.011.
  assert.ok(Math.abs(m.mean) < 0.012, `mean ${m.mean}`);
  assert.ok(Math.abs(m.variance - 1) < 0.016, `variance ${m.variance}`);
  assert.ok(Math.abs(m.skewness) < 0.03, `skewness ${m.skewness}`);
  assert.ok(Math.abs(m.kurtosis - 3) < 0.06, `kurtosis ${m.kurtosis}`);
  const d = ksDistance(z, normalCdf);
  assert.ok(d < ksCritical001(n), `KS distance ${d} ≥ ${ksCritical001(n)}`);
});

Deno.test("boxMuller pairs are uncorrelated and the index/sign draws are uniform", () => {
  const n = 100_000;
  const words = sampleWords(4 * n);
  let sxy = 0;
  const counts = new Float64Array(40);
  let plus = 0;
  for (let i = 0; i < n; i++) {
    const [a, b] = boxMuller(words[4 * i], words[4 * i + 1]);
    sxy += a * b;
    const idx = uniformIndex(words[4 * i + 2], 40);
    assert.ok(idx >= 0 && idx < 40 && Number.isInteger(idx));
    counts[idx]++;
    if (rademacher(words[4 * i + 3]) > 0) plus++;
  }
  assert.ok(Math.abs(sxy / n) < 0.02, `correlation ${sxy / n}`);
  // χ² with 39 degrees of freedom: 0.999 quantile ≈ 72.
  const expected = n / 40;
  const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 72, `χ² ${chi2}`);
  assert.ok(Math.abs(plus / n - 0.5) < 0.006, `P(+1) = ${plus / n}`);
});
