/**
 * The theory's stopping rule of the P/Q experiments (server/experiments/pq_anneal.ts; seed-001
 * Algorithms 1–2, seed-000 §3.1) on the reference: the thresholds ε2 = √(ε1/q) and
 * ε′2 = stop_scale·ε2, the first qualifying step (after the anneal for the annealing
 * algorithms), the frozen replica, and the values recorded at the anneal and at the stop.
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import { qFraction } from "../server/experiments/pq_model.ts";
import type { PQData, PQShape } from "../server/experiments/pq_model.ts";
import type { AdvanceResult, RunSpec } from "../server/experiments/types.ts";

function spec(experiment: string, params: Record<string, unknown>, steps = 150): RunSpec {
  return validateRunSpec({
    experiment,
    replicas: 2,
    steps,
    every: 1,
    backend: "reference",
    params: {
      d: 18,
      kappa_sq: 0.25,
      m: 14,
      n_test: 50,
      r_scale: 10,
      tau0: 0.3,
      epsilon1: 0.15,
      stop: "loss",
      ...params,
    },
  });
}

async function run(s: RunSpec) {
  const exp = getExperiment(s.experiment);
  const prep = exp.prepare(s) as { data: PQData; shape: PQShape; stopAt: Float64Array };
  const result: AdvanceResult = await exp.reference(prep, s).advance(s.steps);
  return { prep, result };
}

Deno.test("large→small stops at the first step after its anneal with L̂ ≤ √(ε1/q), then is frozen", async () => {
  const s = spec("large-lr", {
    algo: "large-then-small",
    eta1: [2, 3],
    eta2: 1,
    anneal: "loss",
    lambda_scale: 0.01,
  });
  const { prep, result } = await run(s);
  const loss = (t: number, r: number) => result.snapshots[t].metrics.train_loss[r];
  const stops = result.events.filter((e) => e.type === "phase_change" && e.phase === "stop");
  assert.ok(stops.length >= 1);
  for (const e of stops) {
    if (e.type !== "phase_change") continue;
    const r = e.replica!;
    const eps2 = Math.sqrt(0.15 / qFraction(prep.data, prep.shape, r));
    assert.ok(Math.abs(prep.stopAt[r] - eps2) < 1e-12);
    const last = result.snapshots[s.steps].metrics;
    const annealedAt = last.anneal_step[r];
    assert.ok(annealedAt >= 0 && annealedAt <= e.step);
    assert.ok(loss(e.step, r) <= Math.fround(eps2) + 1e-6);
    for (let t = annealedAt; t < e.step; t++) assert.ok(loss(t, r) > eps2 - 1e-6, `step ${t}`);
    // Frozen from the stop on: every later snapshot equals the one at the stop.
    for (let t = e.step + 1; t <= s.steps; t++) assert.equal(loss(t, r), loss(e.step, r));
    assert.equal(last.stop_step[r], e.step);
    assert.equal(last.train_loss_at_stop[r], loss(e.step, r));
    assert.equal(
      last.p_alignment_at_anneal[r],
      result.snapshots[annealedAt].metrics.p_alignment[r],
    );
    assert.match(e.detail!, /≤ ε2 = .* stopped; train_loss /);
  }
  // The anneal's values are also a note.
  assert.ok(result.events.some((e) => e.type === "note" && e.detail.includes("at the anneal")));
});

Deno.test("without an anneal the stop waits for ε′2 = stop_scale·ε2, from step 0 on", async () => {
  const half = await run(
    spec("large-lr", { algo: "small", eta2: 2, lambda_scale: 0.01, stop_scale: 0.9 }),
  );
  const full = await run(spec("large-lr", { algo: "small", eta2: 2, lambda_scale: 0.01 }));
  for (let r = 0; r < 2; r++) {
    assert.ok(Math.abs(half.prep.stopAt[r] - 0.9 * full.prep.stopAt[r]) < 1e-12);
  }
  const stepOf = (x: typeof half) =>
    x.result.snapshots[x.result.snapshots.length - 1].metrics.stop_step;
  // ε′2 = ε2 stops both replicas within 150 steps; 0.9·ε2 later or never.
  for (let r = 0; r < 2; r++) {
    assert.ok(stepOf(full)[r] > 0);
    assert.ok(stepOf(half)[r] < 0 || stepOf(half)[r] > stepOf(full)[r]);
  }
});

Deno.test("stop=off never stops; LNSGD-S checks the stop only every anneal_check_every steps", async () => {
  const off = await run(
    spec("large-lr", { algo: "small", eta2: 2, lambda_scale: 0.01, stop: "off" }),
  );
  assert.deepEqual([...off.prep.stopAt], [-1, -1]);
  const last = off.result.snapshots[150].metrics;
  assert.deepEqual([...last.stop_step], [-1, -1]);
  const sgd = await run(
    spec("label-noise-anneal", { algo: "lnsgd-s", eta2: 1, anneal_check_every: 10 }, 400),
  );
  const stops = sgd.result.events.filter((e) => e.type === "phase_change" && e.phase === "stop");
  assert.equal(stops.length, 2);
  for (const e of stops) assert.equal(e.step % 10, 0);
});
