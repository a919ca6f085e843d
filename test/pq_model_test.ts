/**
 * The shared P/Q data model and network (server/experiments/pq_model.ts): the generator's
 * proportions, margins and norms, the exact Q-only metrics, the odd-part identity behind
 * p_alignment, and the network gradient against finite differences.
 */
import assert from "node:assert/strict";
import {
  accumulateGradient,
  forwardExample,
  fullBatchGradient,
  generatePQData,
  generateRunData,
  initPQNet,
  logistic,
  logisticDeriv,
  pqMetrics,
  type PQShape,
  pqShape,
  qOutput,
  rayLoss,
  SUBSET_BOTH,
  SUBSET_P_ONLY,
  SUBSET_Q_ONLY,
  trainExample,
  trainLoss,
} from "../server/experiments/pq_model.ts";
import { normals } from "../server/rng/philox.ts";
import { ksDistance } from "./stats.ts";

function shapeOf(over: Record<string, unknown> = {}): PQShape {
  return pqShape({
    d: 32,
    kappa_sq: 0.01,
    p0_scale: 1,
    q0: 0.4,
    gamma_scale: 1,
    r_scale: 1,
    m: 16,
    n_test: 500,
    ...over,
  } as Record<string, number>);
}

Deno.test("generator: subset proportions, labels and the Q ray fractions match p0, q0", () => {
  // N = 3200 examples, p0 = 0.005 would be too rare to test: raise it with p0_scale.
  const shape = shapeOf({ kappa_sq: 0.01, p0_scale: 30 }); // p0 = 0.15, q0 = 0.4
  const data = generatePQData(shape, 11);
  const n = shape.n;
  assert.equal(n, 3200);
  const sd = (p: number) => Math.sqrt(p * (1 - p) / n);
  // 4.5 standard deviations: a false alarm has probability < 1e-5 per check.
  assert.ok(Math.abs(data.counts[SUBSET_P_ONLY] / n - 0.15) < 4.5 * sd(0.15));
  assert.ok(Math.abs(data.counts[SUBSET_Q_ONLY] / n - 0.4) < 4.5 * sd(0.4));
  let pos = 0, onZ = 0, onPlus = 0, onMinus = 0;
  for (let i = 0; i < n; i++) {
    if (data.y[i] > 0) pos++;
    if (data.subset[i] !== SUBSET_Q_ONLY) continue;
    const c1 = data.x2[2 * i + 1];
    if (c1 === 0) onZ++;
    else if (c1 > 0) onPlus++;
    else onMinus++;
  }
  assert.ok(Math.abs(pos / n - 0.5) < 4.5 * sd(0.5));
  const nq = data.counts[SUBSET_Q_ONLY];
  const sq = (p: number) => Math.sqrt(p * (1 - p) / nq);
  // Prop. D.9: among Q-only examples, z, z+ζ, z−ζ occur with fractions ½, ¼, ¼.
  assert.ok(Math.abs(onZ / nq - 0.5) < 4.5 * sq(0.5));
  assert.ok(Math.abs(onPlus / nq - 0.25) < 4.5 * sq(0.25));
  assert.ok(Math.abs(onMinus / nq - 0.25) < 4.5 * sq(0.25));
});

Deno.test("generator: P margins, half-Gaussian along w*, N(0, 1/d) across, ‖x1‖ ≈ 1", () => {
  const shape = shapeOf({ d: 64, kappa_sq: 0.02 });
  const data = generatePQData(shape, 3);
  const { d, n, gamma0 } = shape;
  const along: number[] = [], across: number[] = [];
  let normSq = 0, count = 0;
  for (let i = 0; i < n; i++) {
    const hasP = data.subset[i] !== SUBSET_Q_ONLY;
    const row = data.x1.subarray(i * d, (i + 1) * d);
    if (!hasP) {
      assert.ok(row.every((v) => v === 0), "Q-only examples have x1 = 0");
      continue;
    }
    const margin = data.y[i] * row[0];
    // The reflection sampler never produces a margin below γ0 (rejection-free conditioning).
    assert.ok(margin >= Math.fround(gamma0) - 1e-7, `margin ${margin} < γ0`);
    along.push((margin - gamma0) * Math.sqrt(d)); // |N(0, 1)|
    for (let k = 1; k < d; k++) across.push(row[k] * Math.sqrt(d)); // N(0, 1)
    normSq += row.reduce((s, v) => s + v * v, 0);
    count++;
  }
  const halfNormalCdf = (x: number) => (x <= 0 ? 0 : erf(x / Math.SQRT2));
  const normalCdf = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
  // KS at 1.63/√n is the 1% critical value; these are exact laws, so use that bound.
  assert.ok(ksDistance(along, halfNormalCdf) < 1.63 / Math.sqrt(along.length));
  assert.ok(ksDistance(across, normalCdf) < 1.63 / Math.sqrt(across.length));
  // E‖x1‖² = (d−1)/d + E(γ0 + |g|/√d)² = 1 + (1 + 2√(2/π))/d: within 2% at this n.
  const expected = (d - 1) / d + (1 + 2 * Math.sqrt(2 / Math.PI) + 1) / d;
  assert.ok(Math.abs(normSq / count - expected) < 0.02, `${normSq / count} vs ${expected}`);
});

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7).
  const s = x < 0 ? -1 : 1, ax = Math.abs(x), t = 1 / (1 + 0.3275911 * ax);
  return s * (1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t +
        0.254829592) * t * Math.exp(-ax * ax));
}

Deno.test("generator: Q points lie on the rays of z and z ± ζ with ‖ζ‖ = r and α ~ U[0, 1]", () => {
  const shape = shapeOf({ d: 256, kappa_sq: 0.1 });
  const data = generatePQData(shape, 8);
  const r = shape.r;
  assert.ok(Math.abs(r - 256 ** -0.75) < 1e-15);
  const alphas: number[] = [];
  for (let i = 0; i < shape.n; i++) {
    if (data.subset[i] === SUBSET_P_ONLY) {
      assert.equal(data.x2[2 * i], 0);
      assert.equal(data.x2[2 * i + 1], 0);
      continue;
    }
    const a = data.x2[2 * i], c = data.x2[2 * i + 1];
    alphas.push(a);
    if (data.y[i] > 0) assert.equal(c, 0, "positives lie on the ray of z");
    else assert.equal(Math.abs(c), Math.fround(a * r), "negatives on the rays of z ± ζ");
  }
  assert.ok(
    ksDistance(alphas, (x) => Math.min(1, Math.max(0, x))) < 1.63 / Math.sqrt(alphas.length),
  );
});

Deno.test("generator: float32-exact, deterministic, test set split by position", () => {
  const shape = shapeOf();
  const a = generatePQData(shape, 5), b = generatePQData(shape, 5), c = generatePQData(shape, 6);
  assert.deepEqual(a.x1, b.x1);
  assert.deepEqual(a.testX2, b.testX2);
  assert.notDeepEqual(a.x1, c.x1);
  for (let k = 0; k < 2 * shape.nTest; k++) {
    assert.equal(a.testSubset[k], k < shape.nTest ? SUBSET_P_ONLY : SUBSET_BOTH);
  }
  // Per-replica data: set s is the data of seed + s.
  const run = generateRunData(shape, 5, 2);
  assert.deepEqual(run.x1.subarray(shape.n * shape.d), c.x1);
});

Deno.test("rayLoss is ∫₀¹ log(1 + e^(−αs)) dα", () => {
  for (const s of [-30, -3, -0.5, -1e-4, 0, 2e-4, 0.01, 0.7, 1, 5, 40]) {
    // Composite Simpson with 20000 panels: error far below 1e-10 for these s.
    const K = 20000;
    let sum = logistic(0) + logistic(s);
    for (let k = 1; k < K; k++) sum += (k % 2 ? 4 : 2) * logistic((k / K) * s);
    const simpson = sum / (3 * K);
    assert.ok(Math.abs(rayLoss(s) - simpson) < 1e-9, `s=${s}: ${rayLoss(s)} vs ${simpson}`);
  }
});

function randomNet(shape: PQShape, seed: number, tau0: number) {
  const net = initPQNet(shape, seed, 0, tau0);
  return net;
}

Deno.test("exact Q-only test metrics equal the mean over a fine grid of α", () => {
  const shape = shapeOf({ r_scale: 30 });
  const data = generateRunData(shape, 2, 1);
  const net = randomNet(shape, 4, 1.0);
  const metrics = pqMetrics(net, data, shape, 0, null);
  const rz = data.rF32;
  const K = 100000;
  let loss = 0, err = 0;
  for (let k = 0; k < K; k++) {
    const alpha = (k + 0.5) / K;
    // Positives α·z (prob ½), negatives α(z ± ζ) (¼ each): by homogeneity f(αx) = α f(x).
    const gz = alpha * qOutput(net, 1, 0);
    const gp = alpha * qOutput(net, 1, rz), gm = alpha * qOutput(net, 1, -rz);
    loss += 0.5 * logistic(gz) + 0.25 * logistic(-gp) + 0.25 * logistic(-gm);
    err += 0.5 * (gz <= 0 ? 1 : 0) + 0.25 * (gp >= 0 ? 1 : 0) + 0.25 * (gm >= 0 ? 1 : 0);
  }
  assert.ok(Math.abs(metrics.test_loss_q_only - loss / K) < 1e-8);
  assert.ok(Math.abs(metrics.test_error_q_only - err / K) < 1e-12);
  assert.equal(metrics.q_second_diff, metrics.g_z_plus + metrics.g_z_minus - 2 * metrics.g_z);
});

Deno.test("p_alignment: r(x1) − r(−x1) = (Σ_j a_j W_j)·x1 exactly, cosine with w* = e1", () => {
  const shape = shapeOf();
  const data = generateRunData(shape, 1, 1);
  const net = randomNet(shape, 9, 0.7);
  const { d, half } = shape;
  const odd = new Float64Array(d);
  for (let j = 0; j < half; j++) for (let k = 0; k < d; k++) odd[k] += net.a[j] * net.W[j * d + k];
  const x = Float32Array.from(normals(1, 2, 3, 4, d));
  const minus = x.map((v) => -v);
  const hW = new Float64Array(half), hV = new Float64Array(half);
  const at = (x1: Float32Array) =>
    forwardExample(
      net,
      { x1, x2: new Float32Array(2), index: 0, hasP: true, hasQ: false },
      hW,
      hV,
      null,
    );
  const lhs = at(x) - at(minus);
  const rhs = odd.reduce((s, v, k) => s + v * x[k], 0);
  assert.ok(Math.abs(lhs - rhs) < 1e-12);
  const m = pqMetrics(net, data, shape, 0, null);
  assert.ok(Math.abs(m.p_alignment - odd[0] / Math.hypot(...odd)) < 1e-12);
});

for (const widths of [{}, { m_p: 10, m_q: 4 }, { m_p: 2, m_q: 12 }]) {
  Deno.test(`full-batch gradient of L̂ matches central finite differences ${JSON.stringify(widths)}`, () => {
    const shape = shapeOf({ d: 8, kappa_sq: 0.2, r_scale: 5, m: 8, ...widths });
    const data = generateRunData(shape, 7, 1);
    const net = randomNet(shape, 3, 0.8);
    const gW = new Float64Array(net.W.length), gV = new Float64Array(net.V.length);
    const loss = fullBatchGradient(net, data, shape, 0, null, gW, gV);
    assert.ok(Math.abs(loss - trainLoss(net, data, shape, 0)) < 1e-14);
    const h = 1e-6;
    let worst = 0, scale = 0;
    for (const [M, G] of [[net.W, gW], [net.V, gV]] as const) {
      for (let k = 0; k < M.length; k++) {
        const keep = M[k];
        M[k] = keep + h;
        const up = trainLoss(net, data, shape, 0);
        M[k] = keep - h;
        const down = trainLoss(net, data, shape, 0);
        M[k] = keep;
        worst = Math.max(worst, Math.abs((up - down) / (2 * h) - G[k]));
        scale = Math.max(scale, Math.abs(G[k]));
      }
    }
    // V columns ≥ 2 never meet the data: their gradient must be exactly zero.
    for (let j = 0; j < shape.halfQ; j++) {
      for (let k = 2; k < shape.d; k++) assert.equal(gV[j * shape.d + k], 0);
    }
    assert.ok(worst < 1e-7 * Math.max(1, scale), `worst ${worst}, scale ${scale}`);
  });
}

Deno.test("separate widths: rows m_p/2 and m_q/2, per-block second layer ±1/√m_p and ±1/√m_q", () => {
  const shape = shapeOf({ m: 8, m_p: 12, m_q: 4 });
  assert.deepEqual([shape.halfP, shape.halfQ, shape.m], [6, 2, 8]);
  assert.ok(Number.isNaN(shape.half));
  const net = randomNet(shape, 3, 0.5);
  assert.equal(net.W.length, 6 * shape.d);
  assert.equal(net.V.length, 2 * shape.d);
  for (const a of net.a) assert.equal(Math.abs(a), 1 / Math.sqrt(12));
  for (const b of net.b) assert.equal(Math.abs(b), 1 / Math.sqrt(4));
  // 0 means m: the paper's single width, bit for bit the same network as without the option.
  const same = randomNet(shapeOf({ m: 8, m_p: 0, m_q: 8 }), 3, 0.5);
  const plain = randomNet(shapeOf({ m: 8 }), 3, 0.5);
  assert.deepEqual([same.W, same.V, same.a, same.b], [plain.W, plain.V, plain.a, plain.b]);
  assert.throws(() => shapeOf({ m_p: 5 }), /params.m_p: must be 0 \(= m\) or even/);
});

Deno.test("gradient with pre-activation noise matches finite differences of the noisy loss", () => {
  // Unequal widths: Ξ's units are W's m_p/2, then V's m_q/2.
  const shape = shapeOf({ d: 6, kappa_sq: 0.3, r_scale: 5, m: 6, m_p: 4, m_q: 8 });
  const data = generateRunData(shape, 2, 1);
  const net = randomNet(shape, 5, 0.9);
  const preact = normals(1, 0, 0, 2, shape.m).map((z) => 0.3 * z);
  const gW = new Float64Array(net.W.length), gV = new Float64Array(net.V.length);
  fullBatchGradient(net, data, shape, 0, preact, gW, gV);
  const noisyLoss = () => {
    const hW = new Float64Array(shape.halfP), hV = new Float64Array(shape.halfQ);
    let s = 0;
    for (let i = 0; i < shape.n; i++) {
      const ex = trainExample(data, shape, 0, i);
      s += logistic(data.y[i] * forwardExample(net, ex, hW, hV, preact));
    }
    return s / shape.n;
  };
  const h = 1e-6;
  for (const [M, G] of [[net.W, gW], [net.V, gV]] as const) {
    for (let k = 0; k < M.length; k++) {
      const keep = M[k];
      M[k] = keep + h;
      const up = noisyLoss();
      M[k] = keep - h;
      const down = noisyLoss();
      M[k] = keep;
      assert.ok(Math.abs((up - down) / (2 * h) - G[k]) < 1e-7, `entry ${k}`);
    }
  }
});

Deno.test("per-example gradient: accumulateGradient(c) adds c·∇f(x)", () => {
  const shape = shapeOf({ d: 6, kappa_sq: 0.3, r_scale: 5, m: 6, m_p: 8, m_q: 2 });
  const data = generateRunData(shape, 4, 1);
  const net = randomNet(shape, 6, 0.9);
  const hW = new Float64Array(shape.halfP), hV = new Float64Array(shape.halfQ);
  const i = data.subset.indexOf(SUBSET_BOTH);
  const ex = trainExample(data, shape, 0, i);
  forwardExample(net, ex, hW, hV, null);
  const gW = new Float64Array(net.W.length), gV = new Float64Array(net.V.length);
  accumulateGradient(net, ex, hW, hV, 1, gW, gV);
  const h = 1e-6;
  for (const [M, G] of [[net.W, gW], [net.V, gV]] as const) {
    for (let k = 0; k < M.length; k++) {
      const keep = M[k];
      M[k] = keep + h;
      const up = forwardExample(net, ex, hW, hV, null);
      M[k] = keep - h;
      const down = forwardExample(net, ex, hW, hV, null);
      M[k] = keep;
      assert.ok(Math.abs((up - down) / (2 * h) - G[k]) < 1e-7);
    }
  }
});

Deno.test("logistic helpers: ℓ' is the derivative, stable at large |z|", () => {
  for (const z of [-50, -3, -0.1, 0, 0.2, 4, 60]) {
    const h = 1e-6;
    assert.ok(Math.abs((logistic(z + h) - logistic(z - h)) / (2 * h) - logisticDeriv(z)) < 1e-8);
  }
  assert.ok(Number.isFinite(logistic(-1000)) && logistic(1000) === 0);
});
