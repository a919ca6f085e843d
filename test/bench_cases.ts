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
  steps(replicas: number, backend: BackendName): number;
  flopsPerReplicaStep?(spec: RunSpec): number;
}

export const BENCH_CASES: BenchCase[] = [
  {
    experiment: "shape-matters",
    params: { algo: "label-noise" },
    batchReplicas: 256,
    steps: (R, backend) =>
      backend === "webgpu"
        ? (R === 1 ? 100_000 : 50_000)
        : Math.max(2_000, Math.floor(300_000 / R)),
    // Residuals X·(v⊙v) and gradient Xᵀr: two n×d multiply-adds; O(d) for the update.
    flopsPerReplicaStep: (spec) => {
      const d = spec.params.d as number, n = spec.params.n as number;
      return 4 * n * d + 6 * d;
    },
  },
];
