/**
 * The wasm PEGR session against the float64 reference session: every algorithm, every
 * metric at every snapshot step, per-replica hyper-parameters and data, call splitting, and
 * divergence. Data are float32 in both; the kernel's weights are float32 (its W0 is σ0·G0
 * rounded to float32, the reference's is exact), so the differences are float32 rounding.
 *
 * Tolerances. Each float32 step rounds the weights (~6e-8 relative) and 400-term inner
 * products (~1e-7 relative); these dynamics are contracting or mildly expanding over the
 * horizons below, and the measured worst relative difference over all metrics is ~1e-5
 * (PEGR_VERBOSE=1 prints it). REL_TOL = 1e-3 leaves a margin of ~100× while a step with the
 * wrong λ, a missing regulariser term or the paper's 1/m factor moves some metric by > 1e-2.
 * Absolute floors: coefficients and inner products that the dynamics drive to ~0 (PEGR
 * suppresses noise to the rounding floor: ~1e-16 in float64, ~1e-7 in float32; γ, ρ start at
 * exactly 0 where W0's rounding shows) are compared to ABS_TOL = 1e-5; test_accuracy is a
 * count over n_test points where a margin within rounding of 0 may flip: ≤ 1 point here.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { AdvanceResult, RunSpec } from "../server/experiments/types.ts";
import { testEachWasmBuild, wasmBackend } from "./wasm_builds.ts";
import { collect } from "./parity_helpers.ts";

await ensureWasm();

const experiment = getExperiment("pegr");
const REL_TOL = 1e-3;
const ABS_TOL = 1e-5;
const N_TEST = 400;
const verbose = Deno.env.get("PEGR_VERBOSE") === "1";

function spec(params: Record<string, unknown>, extra: Record<string, unknown> = {}): RunSpec {
  return validateRunSpec({
    experiment: "pegr",
    replicas: 2,
    steps: 600,
    every: 100,
    backend: "wasm",
    params: {
      sigma_p: [0.5, 1],
      sigma0: [0.01, 0.001],
      lr: [0.02, 0.05],
      pegr_off: 300,
      n_test: N_TEST,
      ...params,
    },
    ...extra,
  });
}

async function compare(s: RunSpec, targets = [s.steps]) {
  const ref = await collect(experiment.reference(experiment.prepare(s), s), [s.steps]);
  const wasm = await collect(await wasmBackend.open(s), targets);
  assert.deepEqual(wasm.snapshots.map((x) => x.step), ref.snapshots.map((x) => x.step));
  assert.deepEqual(wasm.events, ref.events);
  let worst = 0;
  for (let k = 0; k < ref.snapshots.length; k++) {
    const a = wasm.snapshots[k], b = ref.snapshots[k];
    for (const name of Object.keys(b.metrics)) {
      for (let r = 0; r < s.replicas; r++) {
        const x = a.metrics[name][r], y = b.metrics[name][r];
        const tol = name === "test_accuracy"
          ? 1 / N_TEST + 1e-6
          : REL_TOL * Math.max(Math.abs(x), Math.abs(y)) + ABS_TOL;
        assert(
          Math.abs(x - y) <= tol,
          `${name}[${r}] at step ${b.step}: wasm ${x}, reference ${y}`,
        );
        if (Math.abs(y) > 1e-3 && name !== "test_accuracy") {
          worst = Math.max(worst, Math.abs(x - y) / Math.abs(y));
        }
      }
    }
  }
  if (verbose) console.log(`${s.params.algo}: worst relative difference ${worst}`);
  return { ref, wasm };
}

testEachWasmBuild("wasm pegr parity: GD, paper settings", async () => {
  await compare(spec({ algo: "gd" }));
});

testEachWasmBuild(
  "wasm pegr parity: PEGR, paper settings (λ = 0.01), switched off at 300",
  async () => {
    await compare(spec({ algo: "pegr", lambda: [0.01, 0.2] }));
  },
);

testEachWasmBuild("wasm pegr parity: FGR, both conventions", async () => {
  // λ = 0.5 at σ_p = 1 gives λ‖ξ‖²/(nm) ≈ 1: FGR then also drives noise to the rounding
  // floor, so (as in the theory-regime case) the comparison ends 20 steps after the switch-off.
  const short = { steps: 320, every: 40 };
  await compare(spec({ algo: "fgr", lambda: [0.05, 0.5] }, short));
  await compare(spec({ algo: "fgr", lambda: 0.5, fgr_convention: "section5" }, short));
});

testEachWasmBuild(
  "wasm pegr parity: theory regime PEGR up to the switch-off, per-replica data",
  async () => {
    // Noise is suppressed to the rounding floor here (the absolute tolerance covers it); after
    // the switch-off it regrows from that floor, which differs between float32 and float64, so
    // the comparison stops 20 steps after it (docs/experiments/pegr.md, "precision").
    await compare(
      spec({ algo: "pegr", lambda_mode: "theory", pegr_off: 400, data: "per-replica", seed: 3 }, {
        steps: 420,
        every: 60,
      }),
    );
  },
);

testEachWasmBuild(
  "wasm pegr parity: advance() split at arbitrary targets gives the same snapshots",
  async () => {
    const s = spec({ algo: "pegr", lambda: 0.2 }, { steps: 250, every: 50 });
    const { wasm } = await compare(s, [1, 37, 100, 101, 249, 250]);
    assert.deepEqual(wasm.snapshots.map((x) => x.step), [0, 50, 100, 150, 200, 250]);
  },
);

testEachWasmBuild("wasm pegr parity: a diverging replica is reported and frozen", async () => {
  // lr = 50 multiplies the active noise inner products by ~200 per step until the ReLU²
  // outputs overflow; float32 overflows (3e38) long before float64 (1e308), so the wasm
  // replica diverges earlier than the reference's, never later.
  const s = spec({ algo: "gd", lr: [0.02, 50], sigma0: [0.01, 1] }, { steps: 300, every: 100 });
  const ref = await collect(experiment.reference(experiment.prepare(s), s), [300]);
  const wasm = await collect(await wasmBackend.open(s), [300]);
  const diverged = (r: AdvanceResult) =>
    r.events.flatMap((e) => e.type === "replica_diverged" ? [[e.replica, e.step]] : []);
  const [refDiv, wasmDiv] = [diverged(ref), diverged(wasm)];
  if (verbose) console.log("divergence (replica, step):", refDiv, wasmDiv);
  assert.equal(refDiv.length, 1);
  assert.equal(wasmDiv.length, 1);
  assert.equal(wasmDiv[0][0], 1);
  assert(wasmDiv[0][1] <= refDiv[0][1]);
  const last = wasm.snapshots.at(-1)!;
  assert(Number.isNaN(last.metrics.train_loss[1]));
  assert(Math.abs(last.metrics.train_loss[0] - ref.snapshots.at(-1)!.metrics.train_loss[0]) < 1e-6);
});
