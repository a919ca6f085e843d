/**
 * The cases `deno task bench --peers` runs: the lab's parameters for each experiment (the
 * peers in this folder hard-code the same defaults), the metric every contestant prints at the
 * end, and the band of it a correct implementation of the update lands in.
 */
export interface PeerCase {
  labParams: Record<string, unknown>;
  /** Lab metric name; the peers print the same key. */
  metric: string;
  /** Steps of the one-replica run and of the batched run. */
  steps: { single: number; batch: number };
  batchReplicas: number;
  /**
   * [lo, hi] of the final metric (median over replicas) after the single and the batched
   * run, the lab's and peers' values widened; outside it, a contestant runs another update.
   */
  band: { single: [number, number]; batch: [number, number] };
}

export const PEER_CASES: Record<string, PeerCase> = {
  "shape-matters": {
    // App. A.1 with the released code's schedule (÷10 at 1e5 and 2e5): 300k steps recovers v*.
    labParams: { algo: "label-noise" },
    metric: "test_error",
    steps: { single: 300_000, batch: 4_000 },
    batchReplicas: 256,
    // From 95 at v0 = 1: below 0.05 once v* is recovered (GD stays dense, far above);
    // 20–35 after 4k steps (lab and peers, different data draws).
    band: { single: [0, 0.05], batch: [10, 60] },
  },
  "linear-label-noise": {
    // The released code's size (m = 1000, d = 20, n = 200, σ = 4), no frames.
    labParams: { algo: "label-noise-sgd", frame_every: 0 },
    // test_loss barely moves in 100k steps; the mean neuron norm is what label noise changes
    // first (phase I): 0.99 at init, 0.95–0.96 after 2k steps, 0.38–0.40 after 100k (plain
    // SGD stays at 0.99).
    metric: "w_norm_mean",
    steps: { single: 100_000, batch: 2_000 },
    batchReplicas: 64,
    band: { single: [0.3, 0.5], batch: [0.93, 0.97] },
  },
};
