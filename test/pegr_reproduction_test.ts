/**
 * The paper's claim over seeds (data, test set and initialisation per seed), at the
 * theory-regime preset's own settings, on the wasm backend (parity with the float64
 * reference: test/parity_wasm_pegr_test.ts; the same runs on the reference take ~10× longer:
 * `deno run -A test/pegr_measure.ts --preset=seeds --backend=reference`):
 *
 *  - theory regime (λ = 1/(σ_p√d), σ_p = 1, the §4.1 constants d = 400, n = 20, m = 10,
 *    ‖μ‖ = 1, σ0 = 0.01, η = 0.02, 8000 steps, PEGR/FGR off at 4000): PEGR learns the signal
 *    and generalises, GD and FGR memorise the noise and test near chance (Thm 3.2 vs 3.3;
 *    §5.4 for FGR);
 *  - the §4.1 settings read literally (λ = 0.01, 1500 steps, off at 800): PEGR behaves like
 *    GD (notes §8).
 *
 * Thresholds, from the theory-regime preset at σ_p = 1 measured over seeds 0–7 on both
 * backends (docs/experiments/pegr.md): final test accuracy PEGR 0.884–1.000 (seeds 0–2:
 * 1.000), GD 0.498–0.525, FGR 0.499–0.524; at the switch-off max ρ̄ is at the rounding floor
 * under PEGR (≤ 1e-15 float64, ≤ 1e-6 float32) and 8–10 under GD and FGR, max γ is 1.0–2.4
 * under PEGR and ≤ 0.003 under GD. With 500 test points the sampling sd of an accuracy is
 * ≤ 0.023, so "≥ 0.85" for PEGR and "≤ 0.62" for GD/FGR sit beyond the observed extremes by
 * ≥ 1.5 and ≥ 4 sd, while losing the effect (PEGR at chance, or GD learning the signal)
 * crosses them by far. What happens after the switch-off depends on noise inner products
 * that PEGR drove to the rounding floor, so final accuracies differ somewhat between float32
 * and float64 (0.884 vs 0.973 for seed 7); the switch-off checks below do not.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { ensureWasm } from "../server/build_wasm.ts";
import { wasmBackend } from "../server/engine/wasm/backend.ts";
import type { Snapshot } from "../server/experiments/types.ts";
import { theoryRegimeSeeds } from "../server/experiments/pegr_presets.ts";

await ensureWasm();

const SEEDS = 3;

/** Runs one method over SEEDS seeds; returns the snapshots at the switch-off and at the end. */
async function runSeeds(
  algo: string,
  overrides: Record<string, unknown> = {},
  steps?: number,
): Promise<{ off: Snapshot; end: Snapshot }> {
  const run = theoryRegimeSeeds(SEEDS).runs.find((r) => r.spec.params.algo === algo)!;
  const params: Record<string, unknown> = { ...run.spec.params, n_test: 500, ...overrides };
  const total = steps ?? run.spec.steps;
  const every = params.pegr_off as number;
  const spec = validateRunSpec({ ...run.spec, params, steps: total, every, backend: "wasm" });
  const session = await wasmBackend.open(spec);
  const off = (await session.advance(every)).snapshots.at(-1)!;
  const end = (await session.advance(total)).snapshots.at(-1)!;
  await session.dispose();
  return { off, end };
}

const values = (s: Snapshot, name: string) => Array.from(s.metrics[name]);

Deno.test("pegr reproduction: theory regime, PEGR learns the signal, GD and FGR do not", async () => {
  const pegrRun = await runSeeds("pegr");
  const gdRun = await runSeeds("gd");
  const fgrRun = await runSeeds("fgr");
  const acc = {
    pegr: values(pegrRun.end, "test_accuracy"),
    gd: values(gdRun.end, "test_accuracy"),
    fgr: values(fgrRun.end, "test_accuracy"),
  };
  console.log("final test accuracy per seed", JSON.stringify(acc));
  for (const a of acc.pegr) assert(a >= 0.85, `PEGR test accuracy ${a}`);
  for (const a of acc.gd) assert(a <= 0.62, `GD test accuracy ${a}`);
  for (const a of acc.fgr) assert(a <= 0.62, `FGR test accuracy ${a}`);
  assert(Math.max(...acc.fgr) < Math.min(...acc.pegr) - 0.25, "FGR should not match PEGR");
  // All three fit the training set eventually (Fig. 1: losses go to 0 once λ = 0).
  for (const run of [pegrRun, gdRun, fgrRun]) {
    for (const l of values(run.end, "train_loss")) assert(l < 0.2, `train loss ${l}`);
  }
  // The mechanism, at the switch-off: PEGR has kept same-class noise coefficients at ~0 and
  // grown the signal; GD has memorised the noise (ρ̄ ≫ 1) with the signal at its init scale.
  for (const r of values(pegrRun.off, "rho_bar_max")) assert(r < 1e-5, `PEGR max ρ̄ ${r}`);
  for (const g of values(pegrRun.off, "gamma_max")) assert(g > 0.5, `PEGR max γ ${g}`);
  for (const r of values(gdRun.off, "rho_bar_max")) assert(r > 5, `GD max ρ̄ ${r}`);
  for (const g of values(gdRun.off, "gamma_max")) assert(g < 0.05, `GD max γ ${g}`);
  for (const r of values(fgrRun.off, "rho_bar_max")) assert(r > 5, `FGR max ρ̄ ${r}`);
  // λ‖ξ‖²/m ≈ 2 > 1 here: the regime where the linearised reading predicts suppression.
  for (const x of values(pegrRun.off, "lambda_xi_sq_over_m")) assert(x > 1.8 && x < 2.2);
});

Deno.test("pegr reproduction: the literal §4.1 settings (λ = 0.01) do not separate PEGR from GD", async () => {
  // Same seeds at σ_p = 1 with the paper's λ = 0.01, 1500 steps, off at 800, η = 0.02:
  // λ‖ξ‖²/m ≈ 0.4 < 1, so PEGR slows noise memorisation only slightly (notes §8).
  const literal = { lambda_mode: "fixed", lambda: 0.01, pegr_off: 800 };
  const pegrRun = await runSeeds("pegr", literal, 1500);
  const gdRun = await runSeeds("gd", literal, 1500);
  const pegrAcc = values(pegrRun.end, "test_accuracy");
  const gdAcc = values(gdRun.end, "test_accuracy");
  console.log("paper settings, final test accuracy", JSON.stringify({ pegrAcc, gdAcc }));
  for (let s = 0; s < SEEDS; s++) {
    assert(pegrAcc[s] < 0.62 && gdAcc[s] < 0.62, "both should be near chance");
    assert(Math.abs(pegrAcc[s] - gdAcc[s]) < 0.05, "PEGR ≈ GD at λ = 0.01");
  }
  for (const r of values(pegrRun.off, "rho_bar_max")) assert(r > 5, `PEGR memorises: ρ̄ ${r}`);
});
