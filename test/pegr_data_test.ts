/**
 * The PEGR data generator (Definition 2.1 and the draw protocol in pegr.ts's header), the
 * spec-level choices (λ modes, switch-off event, validation) and the metrics' bookkeeping.
 * Statistical checks use bounds of ≥ 5 standard deviations of the estimator, so a correct
 * generator fails them with negligible probability; a wrong scale or a missing projection
 * fails them by far.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import {
  effectiveLambda,
  generateDataSet,
  pegr,
  pegrMetrics,
  pegrPlannedEvents,
  preparePegr,
  replicaView,
} from "../server/experiments/pegr.ts";
import { SpecError } from "../server/experiments/schema.ts";
import { DATA_REPLICA, normals, rademacher, word } from "../server/rng/philox.ts";

function spec(params: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return validateRunSpec({ experiment: "pegr", backend: "reference", params, ...extra });
}

Deno.test("pegr data: follows the documented Philox streams, float32, deterministic", () => {
  const a = generateDataSet(7, 20, 400, 10, 50);
  const b = generateDataSet(7, 20, 400, 10, 50);
  assert.deepEqual(a, b);
  // Training example 3: label from stream 0, noise from stream 1 with coordinate 0 zeroed.
  assert.equal(a.y[3], rademacher(word(7, DATA_REPLICA, 3, 0)));
  const g = normals(7, DATA_REPLICA, 3, 1, 400);
  assert.equal(a.Z[3 * 400], 0);
  for (let k = 1; k < 400; k++) assert.equal(a.Z[3 * 400 + k], Math.fround(g[k]));
  // Test example 5 (streams 2, 3) and initial filter 4 (stream 4).
  assert.equal(a.yTest[5], rademacher(word(7, DATA_REPLICA, 5, 2)));
  assert.equal(a.ZTest[5 * 400 + 9], Math.fround(normals(7, DATA_REPLICA, 5, 3, 400)[9]));
  assert.equal(a.G0[4 * 400 + 17], Math.fround(normals(7, DATA_REPLICA, 4, 4, 400)[17]));
  const c = generateDataSet(8, 20, 400, 10, 50);
  assert.notDeepEqual(a.Z, c.Z);
});

Deno.test("pegr data: ξ is exactly orthogonal to μ and has E‖ξ‖² = σ_p²(d − 1)", () => {
  const d = 400, nTest = 2000;
  const ds = generateDataSet(3, 20, d, 10, nTest);
  let sq = 0, plus = 0;
  for (let t = 0; t < nTest; t++) {
    assert.equal(ds.ZTest[t * d], 0); // <μ, ξ> = ‖μ‖ ξ[0] = 0 exactly, μ = ‖μ‖e_1
    for (let k = 0; k < d; k++) sq += ds.ZTest[t * d + k] ** 2;
    if (ds.yTest[t] === 1) plus++;
    else assert.equal(ds.yTest[t], -1);
  }
  // mean ‖z‖²/(d−1): χ²_{d−1}/(d−1) averaged over 2000 rows has sd √(2/399)/√2000 ≈ 0.0016.
  assert(Math.abs(sq / nTest / (d - 1) - 1) < 0.01);
  // label balance: sd of the fraction 0.011.
  assert(Math.abs(plus / nTest - 0.5) < 0.06);
  // initial directions are standard normal: variance estimate over 8000 entries, sd 0.016.
  const v = ds.G0.reduce((s, x) => s + x * x, 0) / ds.G0.length;
  assert(Math.abs(v - 1) < 0.08);
  // training and test sets are different draws
  assert.notDeepEqual(ds.Z.subarray(0, d), ds.ZTest.subarray(0, d));
});

Deno.test("pegr data: replicas scale the shared directions by σ_p and σ0; per-replica seeds", () => {
  const s = spec({ sigma_p: [0.5, 1.5], sigma0: [0.01, 0.001], n_test: 10 }, { replicas: 2 });
  const prep = preparePegr(s);
  const [r0, r1] = [replicaView(prep, 0), replicaView(prep, 1)];
  for (const k of [1, 57, 399]) {
    assert.equal(r0.problem.xi[k] * 3, r1.problem.xi[k]); // 0.5·z vs 1.5·z, exact in float64
    assert.equal(r0.W0[k], 0.01 * prep.G0[k]);
  }
  assert.equal(r0.problem.mu[0], 1);
  assert.equal(r0.problem.mu.slice(1).every((x) => x === 0), true);
  const per = preparePegr(spec({ data: "per-replica", seed: 4, n_test: 10 }, { replicas: 2 }));
  const own = generateDataSet(5, 20, 400, 10, 10);
  assert.deepEqual(per.Z.subarray(20 * 400), own.Z);
  assert.deepEqual(per.G0.subarray(20 * 400), own.G0);
});

Deno.test("pegr spec: λ modes, the switch-off event, and n < d", () => {
  const theory = spec({ algo: "pegr", lambda_mode: "theory", sigma_p: [0.5, 1] }, {
    replicas: 2,
  });
  assert.deepEqual(Array.from(effectiveLambda(theory)), [0.1, 0.05]);
  assert.deepEqual(Array.from(effectiveLambda(spec({ algo: "gd" }))), [0]);
  assert.deepEqual(Array.from(effectiveLambda(spec({ algo: "fgr", lambda: 0.3 }))), [0.3]);
  assert.deepEqual(pegrPlannedEvents(spec({ algo: "pegr" }, { steps: 1500 })), [{
    type: "phase_change",
    step: 800,
    phase: "regulariser_off",
    detail: "PEGR switched off: λ = 0 from update 800 on",
  }]);
  assert.equal(pegrPlannedEvents(spec({ algo: "fgr", pegr_off: 50 }, { steps: 100 }))[0].step, 50);
  assert.deepEqual(pegrPlannedEvents(spec({ algo: "gd" }, { steps: 1500 })), []);
  assert.deepEqual(pegrPlannedEvents(spec({ algo: "pegr", pegr_off: 2000 }, { steps: 1500 })), []);
  assert.throws(() => preparePegr(spec({ d: 20, n: 20 })), SpecError);
  assert.throws(() => spec({ lambda_mode: "auto" }), SpecError);
});

Deno.test("pegr metrics: initial values, switch-off of the regulariser, the λ‖ξ‖²/m diagnostic", async () => {
  const s = spec(
    { algo: "pegr", lambda: 0.05, pegr_off: 3, n_test: 200, sigma0: 0.001 },
    { steps: 6, every: 3 },
  );
  const prep = preparePegr(s);
  const rep = replicaView(prep, 0);
  const m0 = pegrMetrics(prep, rep, rep.W0, 0);
  assert(Math.abs(m0.train_loss - Math.log(2)) < 1e-3); // f ≈ 0 at a tiny initialisation
  assert.equal(m0.gamma_max, 0);
  assert.equal(m0.rho_bar_max, 0);
  let meanXi = 0;
  for (const x of rep.problem.xiNormSq) meanXi += x / prep.n;
  assert.equal(m0.lambda_xi_sq_over_m, 0.05 * meanXi / 10);
  assert(Math.abs(m0.lambda_xi_sq_over_m - 0.05 * 399 / 10) < 0.2); // ≈ λσ_p²(d−1)/m
  assert(
    m0.regulariser > 0 && Math.abs(m0.regulariser - 0.05 * m0.mean_example_grad_sq / 2) < 1e-15,
  );
  const session = pegr.reference(prep, s);
  const { snapshots } = await session.advance(6);
  assert.deepEqual(snapshots.map((x) => x.step), [0, 3, 6]);
  assert(snapshots[0].metrics.regulariser[0] > 0);
  assert.equal(snapshots[1].metrics.regulariser[0], 0); // λ = 0 from update 3 on
  assert(snapshots[2].metrics.mean_example_grad_sq[0] > 0);
  for (const name of pegr.metrics.map((x) => x.name)) {
    assert(Number.isFinite(snapshots[2].metrics[name][0]), name);
  }
});

Deno.test("pegr presets: every run validates, one replica per label, the dashboard form", async () => {
  const { PEGR_PRESETS } = await import("../server/experiments/pegr_presets.ts");
  const { toDashboardPreset } = await import("../client/dashboard/presets_pegr.ts");
  const { findPreset, presetSpecs } = await import("../client/dashboard/presets.ts");
  assert.deepEqual(PEGR_PRESETS.map((p) => p.id), [
    "pegr-paper-settings",
    "pegr-theory-regime",
    "pegr-theory-regime-seeds",
  ]);
  for (const preset of PEGR_PRESETS) {
    assert.deepEqual(preset.runs.map((r) => r.spec.params.algo), ["gd", "pegr", "fgr"]);
    for (const run of preset.runs) {
      const s = validateRunSpec(run.spec);
      assert.equal(run.replicaLabels.length, s.replicas);
      preparePegr({ ...s, params: { ...s.params, n_test: 1 } }); // n < d etc.
    }
    // What the dashboard posts for this preset is a valid spec for every run.
    const registered = findPreset(preset.id);
    assert(registered, `${preset.id} is registered with the dashboard`);
    assert.deepEqual(registered, toDashboardPreset(preset));
    for (const body of presetSpecs(registered)) validateRunSpec(body);
  }
  const paper = PEGR_PRESETS[0].runs[1].spec;
  assert.equal(paper.params.lambda, 0.01);
  assert.equal(paper.params.pegr_off, 800);
  assert.equal(paper.steps, 1500);
  const theory = PEGR_PRESETS[1].runs[1].spec;
  assert.equal(theory.params.lambda_mode, "theory");
  assert.equal(theory.steps, 8000);
});
