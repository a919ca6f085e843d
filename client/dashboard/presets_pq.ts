/**
 * Presets of `large-lr` (seed 001) and `label-noise-anneal` (seed 000), registered with the
 * dashboard; imported for its side effect by main.ts. Each is its paper's three-way
 * comparison at the lab's documented defaults, with one data seed shared by the three runs
 * and five replicas (seeds). What they show, measured: docs/experiments/large-lr.md and
 * docs/experiments/label-noise-anneal.md (at simulable sizes neither paper's ordering of
 * P-only test error appears; the presets show why).
 */
import { registerPreset } from "./presets.ts";

const PQ_METRICS = [
  "test_error_p_only",
  "test_error_q_only",
  "train_loss",
  "train_loss_q_only",
  "q_second_diff",
  "p_alignment",
  "activation_flips",
  "lr",
];
const SEED = 1;

registerPreset({
  id: "large-lr-three-schedules",
  experiment: "large-lr",
  title:
    "Initial large LR (Li, Wei, Ma 2019), §3 and App. F.1: large→small vs small vs small + noise",
  description:
    "Full-batch GD with Gaussian gradient noise and weight decay on the P/Q mixture (d=64, " +
    "r_scale=20, τ0=1.5, η1=40 → η2=0.5 at step 1000). The small LR memorises Q first (Q-only " +
    "test error 0 by step 500) while the large LR keeps Q unlearned until the anneal — the " +
    "paper's learning order — but after the anneal the runs forget their past and end with " +
    "the same P-only test error (docs/experiments/large-lr.md).",
  runs: [
    { label: "large → small", params: { algo: "large-then-small", seed: SEED } },
    { label: "small", params: { algo: "small", seed: SEED } },
    { label: "small + pre-activation noise", params: { algo: "small-preact-noise", seed: SEED } },
  ],
  steps: 3000,
  every: 50,
  replicas: 5,
  view: { metrics: PQ_METRICS },
});

registerPreset({
  id: "label-noise-anneal-three-algorithms",
  experiment: "label-noise-anneal",
  title: "Label noise × annealing (Wei, Ren, Du), §3.1: LNSGD-LS vs LNSGD-S vs FBGD-LS",
  description:
    "Batch-1 label-flip SGD (δ=0.1) with η1=2 → η2=0.2 at step 10000, the same with η2 " +
    "throughout, and full-batch GD with the same schedule (d=64, r_scale=20, τ0=0.1). Measured " +
    "over 5 seeds the paper's ordering is reversed: label noise at η1 degrades the P " +
    "direction and LNSGD-LS ends worst on P-only test error (docs/experiments/label-noise-anneal.md).",
  runs: [
    { label: "LNSGD-LS", params: { algo: "lnsgd-ls", seed: SEED } },
    { label: "LNSGD-S", params: { algo: "lnsgd-s", seed: SEED } },
    { label: "FBGD-LS", params: { algo: "fbgd-ls", seed: SEED } },
  ],
  steps: 20000,
  every: 250,
  replicas: 5,
  view: { metrics: PQ_METRICS },
});
