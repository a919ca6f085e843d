/**
 * The float64 reference of Shape Matters against finite differences of the losses and the
 * update rules of App. A.1 / eq. (1)–(2), so the oracle for the kernels is itself checked.
 */
import assert from "node:assert/strict";
import { assertClose } from "./gradient_check.ts";
import {
  exampleGradient,
  fullGradient,
  generateData,
  prepareShapeMatters,
  residuals,
  shapeMattersDraws,
  shapeMattersStep,
  testError,
  trainLoss,
} from "../server/experiments/shape_matters.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { normals } from "../server/rng/philox.ts";
import { shapeMatters } from "../server/experiments/shape_matters.ts";

const d = 12, n = 7, r = 3;
const data = generateData(5, n, d, r);

function randomV(seed: number): Float64Array {
  return normals(seed, 0, 0, 9, d).map((z) => 1 + 0.3 * z);
}

function loss(v: Float64Array): number {
  return trainLoss(residuals(v, data.X, data.y, n, d));
}

function exampleLoss(v: Float64Array, i: number, labelShift = 0): number {
  let f = 0;
  for (let k = 0; k < d; k++) f += v[k] * v[k] * data.X[i * d + k];
  return 0.25 * (f - data.y[i] - labelShift) ** 2;
}

function numericGradient(fn: (v: Float64Array) => number, v: Float64Array): Float64Array {
  const h = 1e-6;
  const g = new Float64Array(v.length);
  for (let k = 0; k < v.length; k++) {
    const p = v.slice(), m = v.slice();
    p[k] += h, m[k] -= h;
    g[k] = (fn(p) - fn(m)) / (2 * h);
  }
  return g;
}

Deno.test("∇L matches central finite differences of L = (1/n)Σ¼(<v⊙v,x_i>−y_i)²", () => {
  for (const seed of [1, 2, 3]) {
    const v = randomV(seed);
    const g = fullGradient(v, residuals(v, data.X, data.y, n, d), data.X, d);
    assertClose(g, numericGradient(loss, v), 1e-7, `seed ${seed}`);
  }
});

Deno.test("∇ℓ_i matches finite differences of the per-example loss", () => {
  const v = randomV(4);
  const res = residuals(v, data.X, data.y, n, d);
  for (let i = 0; i < n; i++) {
    assertClose(
      exampleGradient(v, res, data.X, d, i),
      numericGradient((w) => exampleLoss(w, i), v),
      1e-7,
      `i=${i}`,
    );
  }
});

function specFor(algo: string, extra: Record<string, unknown> = {}) {
  return validateRunSpec({
    experiment: "shape-matters",
    params: { algo, d, n, r, seed: 5, ...extra },
    replicas: 2,
    steps: 10,
    every: 5,
    backend: "reference",
  });
}

Deno.test("label-noise step = v − lr[∇L + ∇ℓ̃_i − ∇ℓ_i] with the noisy label y_i + δs (eq. 1)", () => {
  for (const noise of ["gaussian", "rademacher"]) {
    const prep = prepareShapeMatters(specFor("label-noise", { noise, delta: 0.7 }));
    const v = randomV(6);
    const { i, s } = shapeMattersDraws(prep, 1, 0);
    if (noise === "rademacher") assert.ok(s === 1 || s === -1);
    const noisy = numericGradient((w) => exampleLoss(w, i, 0.7 * s), v);
    const clean = numericGradient((w) => exampleLoss(w, i), v);
    const full = numericGradient(loss, v);
    const expected = v.map((vk, k) => vk - 0.01 * (full[k] + noisy[k] - clean[k]));
    const got = v.slice();
    shapeMattersStep(prep, got, 1, 0);
    assertClose(got, expected, 1e-8, noise);
  }
});

Deno.test("mini-batch noise step = v − lr[∇L + δ(∇ℓ_i − ∇ℓ_j)], i and j independent", () => {
  const prep = prepareShapeMatters(specFor("minibatch-noise", { delta: 1.3 }));
  let sawDistinct = false;
  for (let step = 0; step < 20; step++) {
    const v = randomV(step + 10);
    const { i, j } = shapeMattersDraws(prep, 0, step);
    if (i !== j) sawDistinct = true;
    const gi = numericGradient((w) => exampleLoss(w, i), v);
    const gj = numericGradient((w) => exampleLoss(w, j), v);
    const full = numericGradient(loss, v);
    const expected = v.map((vk, k) => vk - 0.01 * (full[k] + 1.3 * (gi[k] - gj[k])));
    const got = v.slice();
    shapeMattersStep(prep, got, 0, step);
    assertClose(got, expected, 1e-8, `step ${step}`);
  }
  assert.ok(sawDistinct);
});

Deno.test("gaussian and langevin steps add σ·z and sqrt(2·lr/λ)·z from stream 1", () => {
  const v = randomV(7);
  const full = numericGradient(loss, v);
  const z = normals(5, 1, 3, 1, d);
  const g = prepareShapeMatters(specFor("gaussian", { sigma: 0.5 }));
  const got = v.slice();
  shapeMattersStep(g, got, 1, 3);
  assertClose(got, v.map((vk, k) => vk - 0.01 * (full[k] + 0.5 * z[k])), 1e-8, "gaussian");
  const l = prepareShapeMatters(specFor("langevin", { lambda: 50 }));
  const got2 = v.slice();
  shapeMattersStep(l, got2, 1, 3);
  const scale = Math.sqrt(2 * 0.01 / 50);
  assertClose(got2, v.map((vk, k) => vk - 0.01 * full[k] + scale * z[k]), 1e-8, "langevin");
});

Deno.test("the schedule divides the learning rate from its milestone on", () => {
  const spec = specFor("gd", { lr_schedule: [[2, 0.1]] });
  const prep = prepareShapeMatters(spec);
  const v = randomV(8);
  const full = numericGradient(loss, v);
  for (const [step, lr] of [[1, 0.01], [2, 0.001], [9, 0.001]]) {
    const got = v.slice();
    shapeMattersStep(prep, got, 0, step);
    assertClose(got, v.map((vk, k) => vk - lr * full[k]), 1e-8, `step ${step}`);
  }
  assert.deepEqual(shapeMatters.plannedEvents(spec), [{
    type: "lr_change",
    step: 2,
    factor: 0.1,
    lr_scale: 0.1,
  }]);
});

Deno.test("the same data seed gives the same data for every algorithm; test error is ‖v⊙v − v*‖²", () => {
  const a = prepareShapeMatters(specFor("gd"));
  const b = prepareShapeMatters(specFor("langevin"));
  assert.deepEqual(a.X, b.X);
  assert.deepEqual(a.y, b.y);
  const c = prepareShapeMatters(
    validateRunSpec({ experiment: "shape-matters", params: { d, n, r, seed: 6 } }),
  );
  assert.notDeepEqual(a.X, c.X);
  // y is exactly <v*⊙v*, x> with v* = (1,…,1,0,…): at v = v* the residuals vanish.
  const vStar = new Float64Array(d).map((_, k) => (k < r ? 1 : 0));
  assert.ok(loss(vStar) < 1e-12);
  assert.equal(testError(vStar, a.vStarSq), 0);
  assert.equal(testError(new Float64Array(d).fill(1), a.vStarSq), d - r);
});

Deno.test("per-replica data: replica k trains on data seed seed+k", () => {
  const prep = prepareShapeMatters(specFor("gd", { data: "per-replica" }));
  const other = generateData(6, n, d, r);
  assert.deepEqual(prep.X.subarray(n * d, 2 * n * d), other.X);
});

Deno.test("a diverging replica is reported once at its step and the others go on", async () => {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    params: { algo: "gd", d, n, r, lr: [0.01, 9] },
    replicas: 2,
    steps: 40,
    every: 10,
    backend: "reference",
  });
  const session = shapeMatters.reference(shapeMatters.prepare(spec), spec);
  const res = await session.advance(40);
  const div = res.events.filter((e) => e.type === "replica_diverged");
  assert.equal(div.length, 1);
  assert.equal((div[0] as { replica: number }).replica, 1);
  const last = res.snapshots.at(-1)!;
  assert.ok(Number.isNaN(last.metrics.train_loss[1]));
  assert.ok(Number.isFinite(last.metrics.train_loss[0]));
  assert.deepEqual(res.snapshots.map((s) => s.step), [0, 10, 20, 30, 40]);
});
