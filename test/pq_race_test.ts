/**
 * The race diagnostics of the P/Q experiments (server/experiments/pq_race.ts): η-time
 * Σ_{s<t} γ_s across the anneal and the stop, and the first snapshot at which each block's loss
 * reaches race_loss, on a reference run whose snapshots are checked one by one.
 */
import assert from "node:assert/strict";
import { etaTime } from "../server/experiments/pq_race.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";

Deno.test("η-time: η1 per update before the anneal, η2 after it or throughout, frozen at the stop", () => {
  assert.equal(etaTime(10, true, -1, -1, 4, 0.5), 40);
  assert.equal(etaTime(10, true, 10, -1, 4, 0.5), 40); // update 10 is the first at η2
  assert.equal(etaTime(14, true, 10, -1, 4, 0.5), 42);
  assert.equal(etaTime(14, true, 10, 12, 4, 0.5), 41);
  assert.equal(etaTime(14, false, -1, -1, 4, 0.5), 7);
  assert.equal(etaTime(14, false, -1, 6, 4, 0.5), 3);
});

Deno.test("race metrics: the first snapshot at which the P-only / Q-only training loss ≤ race_loss", async () => {
  const spec = validateRunSpec({
    experiment: "large-lr",
    replicas: 2,
    steps: 120,
    every: 5,
    backend: "reference",
    params: {
      algo: "large-then-small",
      d: 18,
      kappa_sq: 0.25,
      m: 14,
      n_test: 50,
      r_scale: 10,
      tau0: 0.3,
      eta1: 3,
      eta2: 1,
      anneal: "step",
      anneal_step: 40,
      lambda_scale: 0.01,
      race_loss: 0.5,
    },
  });
  const exp = getExperiment("large-lr");
  const { snapshots } = await exp.reference(exp.prepare(spec), spec).advance(spec.steps);
  const last = snapshots[snapshots.length - 1].metrics;
  for (let r = 0; r < 2; r++) {
    for (const b of ["p", "q"]) {
      const first = snapshots.find((s) => s.metrics[`train_loss_${b}_only`][r] <= 0.5);
      assert.equal(last[`race_${b}_step`][r], first ? first.step : -1, `${b}, replica ${r}`);
      if (first) {
        const want = first.step <= 40 ? 3 * first.step : 120 + (first.step - 40);
        assert.equal(last[`race_${b}_eta_time`][r], want);
      }
    }
    assert.equal(last.eta_time[r], 3 * 40 + 80);
  }
  assert.ok(last.race_p_step[0] > 0, "P reaches 0.5 within the run");
});
