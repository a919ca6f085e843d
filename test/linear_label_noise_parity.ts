/**
 * What the wasm and WebGPU parity tests of `linear-label-noise` share: the run they compare
 * (odd sizes so padding is exercised; per-replica lr and σ), the metric tolerances and the
 * balance-identity rule. The reasoning behind the numbers is in each test file's header.
 */
import { validateRunSpec } from "../server/experiments/registry.ts";
import type { BackendName, RunSpec } from "../server/experiments/types.ts";
import { relClose } from "./parity_helpers.ts";

export const REL_TOL = 1e-4;

/** Absolute floors for metrics that go to 0 (float32 floors measured in the test headers). */
export const ABS_FLOOR: Record<string, number> = {
  train_loss: 1e-9,
  test_loss: 1e-9,
  theta_error: 1e-5,
  lazy_dist_min: 2e-6,
  lazy_dist_max: 2e-6,
  align_raw: 1e-6,
  align_signed_cos: 1e-6,
};

/** The compared run: 3 replicas, m = 37 (not a multiple of 4: padding neurons stay inert). */
export function linearParitySpec(
  backend: BackendName,
  steps: number,
  params: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): RunSpec {
  return validateRunSpec({
    experiment: "linear-label-noise",
    replicas: 3,
    steps,
    every: 50,
    backend,
    params: {
      m: 37,
      d: 7,
      n: 23,
      n_test: 19,
      lr: [0.01, 0.02, 0.005],
      sigma: [1, 2, 0.5],
      frame_every: 2,
      ...params,
    },
    ...extra,
  });
}

/** balance_residual is exact in float64 and bounded in float32; the rest within tolerance. */
export function metricClose(name: string, want: number, got: number): boolean {
  if (name !== "balance_residual") return relClose(want, got, REL_TOL, ABS_FLOOR[name] ?? 0);
  return Number.isNaN(want) ? Number.isNaN(got) : want < 1e-12 && got < 5e-5;
}
