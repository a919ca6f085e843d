/**
 * The weight-decay floor warning of `large-lr` (server/experiments/pq_floor.ts, issue 14
 * item 1) and the stopping rule's freeze (pq_anneal.ts): a run whose λ holds the loss above
 * the anneal threshold gets one `note` per replica with the measured floor, on the reference
 * and the wasm backend at the same step; a run whose λ lets the anneal fire gets none.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { RunEvent, RunSpec } from "../server/experiments/types.ts";
import { wasmBackend } from "../server/engine/wasm/backend.ts";
import { FloorWatch } from "../server/experiments/pq_floor.ts";

await ensureWasm();

function spec(params: Record<string, unknown>, backend = "reference"): RunSpec {
  return validateRunSpec({
    experiment: "large-lr",
    replicas: 2,
    steps: 200,
    every: 10,
    backend,
    params: {
      d: 18,
      kappa_sq: 0.25,
      m: 14,
      n_test: 50,
      r_scale: 10,
      tau0: 0.3,
      eta1: [2, 3],
      eta2: 1,
      anneal: "loss",
      epsilon1: 0.15,
      ...params,
    },
  });
}

async function notes(s: RunSpec): Promise<RunEvent[]> {
  const exp = getExperiment("large-lr");
  const session = s.backend === "wasm"
    ? await wasmBackend.open(s)
    : exp.reference(exp.prepare(s), s);
  const { events } = await session.advance(s.steps);
  await session.dispose();
  return events.filter((e) => e.type === "note" && e.detail.includes("cannot fire"));
}

Deno.test("λ that holds the loss above q·log 2 + ε1: one note per replica with the floor", async () => {
  // λ = 18^(−5/4) ≈ 0.027: relaxation 1/(η1λ) ≈ 18 and 12 steps, loss settles at ≈ 0.63 > 0.58.
  const ref = await notes(spec({ lambda_scale: 1 }));
  assert.equal(ref.length, 2);
  for (const e of ref) {
    assert.ok(
      e.type === "note" && /settled at ≈ 0\.6\d+ .* anneal threshold/.test(e.detail),
      e.type === "note" ? e.detail : "",
    );
  }
  const wasm = await notes(spec({ lambda_scale: 1 }, "wasm"));
  assert.deepEqual(wasm.map((e) => e.step), ref.map((e) => e.step));
});

Deno.test("λ small enough for the anneal, or the step rule: no floor note", async () => {
  assert.deepEqual(await notes(spec({ lambda_scale: 0.01 })), []);
  // The step rule anneals whatever the loss: nothing to warn about before it.
  assert.deepEqual(await notes(spec({ lambda_scale: 1, anneal: "step", anneal_step: 150 })), []);
});

Deno.test("floor watch: a loss still falling, or already below the threshold, never warns", () => {
  const one = (x: number) => Float64Array.of(x);
  const watch = new FloorWatch({
    replicas: 1,
    every: 10,
    annealing: true,
    annealByLoss: true,
    eta1: one(1),
    eta2: one(0.1),
    lambda: one(0.1),
    threshold: one(0.3),
    stopAt: one(-1),
  });
  // Relaxation 10 steps: a loss falling by 0.01 per 10 steps is learning, not a floor.
  for (let t = 10; t <= 200; t += 10) {
    assert.equal(watch.observe(t, 0, 0.7 - t / 1000, -1, false), null, `step ${t}`);
  }
  // Flat at 0.5 (reached at step 200) from here on: the warning fires once, when a whole
  // window W = max(1/(η1λ), 2·every) = 20 steps (210, 220) has made no new low.
  const fired = [];
  for (let t = 210; t <= 400; t += 10) {
    const e = watch.observe(t, 0, 0.5, -1, false);
    if (e) fired.push(t);
  }
  assert.deepEqual(fired, [220]);
});
