/**
 * Shape Matters, Fig. 1 (right), at the paper's full scale on the Wasm-SIMD backend:
 * d = 100, n = 40, r = 5, τ = 1, lr = 0.01, 300,000 steps, six data seeds (data=per-replica).
 *
 * Thresholds come from the paper's claims, not from one run:
 *  - GD from v0 = 1 converges (train loss → 0) to the interpolant nearest the initialisation in
 *    u = v⊙v space (notes §5 [D]: u ≈ 1 + X⁺(y − X1)), which keeps most of the d − n = 60
 *    null-space coordinates of u near 1. So ‖v⊙v − v*‖² stays of order d − n (≥ 50 is a safe
 *    floor: it would need 10 of the 60 free coordinates to reach 0 exactly) and the support
 *    stays dense (≥ 80 of 100 coordinates above 0.01).
 *  - Label noise recovers v*: Thm 2.1 promises ‖v − v*‖∞ ≤ ε after the anneals; at the code's
 *    schedule (÷10 at 1e5 and 2e5) the residual noise floor is set by the final lr·δ². We ask
 *    for test_error < 0.05 (the bar; 1% of ‖v*⊙v*‖² = 5) and a support within r..r+4:
 *    coordinates off S can sit just above the 0.01 threshold (v_k ≈ 0.1) while the noise
 *    keeps them alive, which the test error already bounds (≤ 5 such at 0.05 total).
 *  - Spherical Gaussian noise does not help (Thm 2.2, Fig. 1): at σ ∈ {0.01, 0.1} the error
 *    stays at GD's level (> 50) and the support dense.
 *  - Mini-batch noise is not asserted to recover v*: the notes (§5) record that it freezes at
 *    the first interpolant it reaches and can diverge at lr = 0.01; we assert only that its
 *    replicas never do worse than GD's and that any divergence is reported, not hidden.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { wasmBackend } from "../server/engine/wasm/backend.ts";
import type { AdvanceResult } from "../server/experiments/types.ts";
import { ensureWasmBuilt } from "./build_helpers.ts";

const SEEDS = 6;

async function runPaperScale(params: Record<string, unknown>): Promise<AdvanceResult> {
  await ensureWasmBuilt();
  const spec = validateRunSpec({
    experiment: "shape-matters",
    params: { data: "per-replica", seed: 123, ...params },
    replicas: SEEDS,
    steps: 300_000,
    every: 50_000,
    backend: "wasm",
  });
  const session = await wasmBackend.open(spec);
  try {
    return await session.advance(spec.steps);
  } finally {
    await session.dispose();
  }
}

function final(result: AdvanceResult, metric: string): number[] {
  return [...result.snapshots.at(-1)!.metrics[metric]];
}

Deno.test("GD from a large initialisation interpolates with a dense, wrong solution", async () => {
  const gd = await runPaperScale({ algo: "gd" });
  for (const loss of final(gd, "train_loss")) assert.ok(loss < 1e-6, `GD interpolates: ${loss}`);
  for (const e of final(gd, "test_error")) assert.ok(e > 50, `GD test error ${e}`);
  for (const s of final(gd, "support_size")) assert.ok(s >= 80, `GD support ${s}`);
});

Deno.test("label noise (Gaussian as the released code, ±1 as the paper) recovers the sparse truth", async () => {
  for (const noise of ["gaussian", "rademacher"]) {
    const ln = await runPaperScale({ algo: "label-noise", noise });
    const errors = final(ln, "test_error");
    const support = final(ln, "support_size");
    for (let r = 0; r < SEEDS; r++) {
      assert.ok(errors[r] < 0.05, `${noise}, seed ${123 + r}: test error ${errors[r]}`);
      assert.ok(
        support[r] >= 5 && support[r] <= 9,
        `${noise}, seed ${123 + r}: support ${support[r]}`,
      );
    }
    assert.equal(ln.events.filter((e) => e.type === "replica_diverged").length, 0);
  }
});

Deno.test("spherical Gaussian noise does not help (σ = 0.01 and 0.1)", async () => {
  const g = await runPaperScale({ algo: "gaussian", sigma: [0.01, 0.01, 0.01, 0.1, 0.1, 0.1] });
  for (const e of final(g, "test_error")) assert.ok(e > 50, `Gaussian-noise test error ${e}`);
  for (const s of final(g, "support_size")) assert.ok(s >= 80, `Gaussian-noise support ${s}`);
});

Deno.test("mini-batch noise: never worse than GD on the same data, divergence reported", async () => {
  const mb = await runPaperScale({ algo: "minibatch-noise" });
  const gd = await runPaperScale({ algo: "gd" });
  const mbErr = final(mb, "test_error"), gdErr = final(gd, "test_error");
  const diverged = new Set(
    mb.events.filter((e) => e.type === "replica_diverged").map((e) =>
      (e as { replica: number }).replica
    ),
  );
  for (let r = 0; r < SEEDS; r++) {
    if (diverged.has(r)) {
      assert.ok(Number.isNaN(mbErr[r]), "a diverged replica reads NaN");
      continue;
    }
    assert.ok(mbErr[r] < gdErr[r], `seed ${123 + r}: mini-batch ${mbErr[r]} vs GD ${gdErr[r]}`);
  }
});
