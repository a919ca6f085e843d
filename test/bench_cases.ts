/**
 * What `deno task bench` measures: one entry per experiment, with the paper-size parameters,
 * the batch size for the replica-throughput figure, the step counts (sized so each timing is
 * about a second or more on the backend), and the arithmetic per replica-step for GFLOP/s.
 */
import type { BackendName, RunSpec } from "../server/experiments/types.ts";

export interface BenchCase {
  experiment: string;
  label?: string;
  params: Record<string, unknown>;
  batchReplicas: number;
  /** `software` is true on a fallback adapter (llvmpipe), about 38 µs per replica-step. */
  steps(replicas: number, backend: BackendName, software: boolean): number;
  flopsPerReplicaStep?(spec: RunSpec): number;
}

export const BENCH_CASES: BenchCase[] = [
  {
    experiment: "linear-label-noise",
    // The released code's size (m = 1000, d = 20, n = 200, σ = 4), label-noise SGD, no frames.
    params: { algo: "label-noise-sgd", frame_every: 0 },
    batchReplicas: 64,
    steps: (R, backend, software) =>
      backend === "webgpu"
        ? (software ? (R === 1 ? 2_000 : 100) : (R === 1 ? 50_000 : 20_000))
        : Math.max(2_000, Math.floor(100_000 / R)),
    // h = Wx and the rank-1 update of W: two m×d multiply-adds; O(m) for a, S and f.
    flopsPerReplicaStep: (spec) => {
      const m = spec.params.m as number, d = spec.params.d as number;
      return 4 * m * d + 12 * m;
    },
  },
  {
    experiment: "shape-matters",
    params: { algo: "label-noise" },
    batchReplicas: 256,
    steps: (R, backend, software) =>
      backend === "webgpu"
        ? (software ? (R === 1 ? 5_000 : 100) : (R === 1 ? 200_000 : 100_000))
        : Math.max(4_000, Math.floor(1_000_000 / R)),
    // Residuals X·(v⊙v) and gradient Xᵀr: two n×d multiply-adds; O(d) for the update.
    flopsPerReplicaStep: (spec) => {
      const d = spec.params.d as number, n = spec.params.n as number;
      return 4 * n * d + 6 * d;
    },
  },
  {
    experiment: "pegr",
    label: "pegr-theory",
    // The theory-regime setting with PEGR on throughout (pegr_off beyond the run).
    params: { algo: "pegr", lambda_mode: "theory", pegr_off: 1e9, n_test: 500 },
    batchReplicas: 64,
    // Enough steps per replica that the 10 snapshots' float64 metrics stay a small share.
    steps: (R, backend, software) =>
      backend === "webgpu" && software ? (R === 1 ? 1_000 : 50) : (R === 1 ? 20_000 : 4_000),
    // Inner products <w_q, ξ_i> and the update Σ_i β_{q,i} ξ_i: two 2m×n×d multiply-adds;
    // the closed-form PEGR coefficients are O(m·n).
    flopsPerReplicaStep: (spec) => {
      const p = spec.params;
      return 8 * (p.m as number) * (p.n as number) * (p.d as number);
    },
  },
  {
    experiment: "large-lr",
    // The documented defaults (d = 64, N = 320, m = 256), full-batch GD with noise and decay.
    params: { algo: "large-then-small", n_test: 200 },
    batchReplicas: 8,
    steps: (R, backend, software) =>
      backend === "webgpu" && software ? (R === 1 ? 100 : 20) : (R === 1 ? 1_000 : 200),
    // Per example that carries P (a fraction 1 − q0 of N; the kernel skips the x1 = 0 rows):
    // the forward W·x1 (2·(m/2)·d) and the gradient's rank-1 update on the active units
    // (about half: (m/2)·d); then decay and noise on both blocks (8·(m/2)·d).
    flopsPerReplicaStep: (spec) => {
      const p = spec.params;
      const d = p.d as number, half = (p.m as number) / 2;
      const withP = Math.round(d / (p.kappa_sq as number)) * (1 - (p.q0 as number));
      return 3 * withP * half * d + 8 * half * d;
    },
  },
  {
    experiment: "label-noise-anneal",
    label: "label-noise-anneal (lnsgd)",
    // Batch-1 label-noise SGD at the defaults; no loss checks (step-rule anneal).
    params: { algo: "lnsgd-ls", n_test: 200, anneal: "step" },
    batchReplicas: 16,
    steps: (R, backend, software) =>
      backend === "webgpu" && software ? (R === 1 ? 2_000 : 500) : (R === 1 ? 100_000 : 20_000),
    // One forward and one rank-1 update of the W block, O(m) for the Q block.
    flopsPerReplicaStep: (spec) => {
      const p = spec.params;
      return 4 * ((p.m as number) / 2) * (p.d as number) + 8 * (p.m as number);
    },
  },
];
