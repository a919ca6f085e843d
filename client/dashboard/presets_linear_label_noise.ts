/**
 * Presets of `linear-label-noise` (seed-002), registered with the dashboard; imported for its
 * side effect by main.ts. Measured behaviour of each: docs/experiments/linear-label-noise.md.
 */
import { registerPreset } from "./presets.ts";

/** The reduced setting of the notes (§6 P3, §7) in which both phases finish within 6·10⁵ steps. */
const REDUCED = { d: 10, m: 100, data_mode: "online", lr: 0.005, seed: 0, frame_every: 5 };
const FIG1_METRICS = [
  "w_norm_mean",
  "align_abs_cos",
  "lazy_dist_max",
  "test_loss",
  "align_signed_cos",
  "theta_error",
  "a_abs_mean",
  "balance_residual",
];

registerPreset({
  id: "linear-fig1",
  experiment: "linear-label-noise",
  title: "Two-layer linear nets, Fig. 1: label-noise SGD vs SGD",
  description:
    "d=10, m=100, online data, η=0.005, same θ*, initialisation and samples: with label noise " +
    "(σ=1) every ‖w_i‖ shrinks ~12× (phase I), then the neurons align with ±θ* (align_abs_cos " +
    "> 0.9 by ~4·10⁵ steps, phase II); plain SGD never leaves the lazy ball 1/√m.",
  runs: [
    { label: "label-noise SGD (σ=1)", params: { ...REDUCED, algo: "label-noise-sgd", sigma: 1 } },
    { label: "SGD", params: { ...REDUCED, algo: "sgd" } },
  ],
  steps: 600000,
  every: 2000,
  replicas: 1,
  view: { metrics: FIG1_METRICS },
});

registerPreset({
  id: "linear-fig1-readme",
  experiment: "linear-label-noise",
  title: "Two-layer linear nets, Fig. 1 at the released code's size (n=200, m=1000, d=20, σ=4)",
  description:
    "The README configuration (η=0.001): ‖w_i‖ falls ~30× by 10⁶ steps while SGD stays lazy; " +
    "with σ held at 4 the alignment stalls near 0.6 (noise floor), as the notes warn.",
  runs: [
    { label: "label-noise SGD (σ=4)", params: { algo: "label-noise-sgd", sigma: 4 } },
    { label: "SGD", params: { algo: "sgd" } },
  ],
  steps: 2000000,
  every: 5000,
  replicas: 1,
  view: { metrics: FIG1_METRICS },
});

registerPreset({
  id: "linear-periodic",
  experiment: "linear-label-noise",
  title: "Two-layer linear nets: periodic label noise (on/off every 5000 steps)",
  description:
    "Released code's periodic variant at its size (σ=4, η=0.001): ‖w_i‖ falls only while the " +
    "noise is on and stays put while it is off; the second layer oscillates under noise and " +
    "settles without it.",
  runs: [
    { label: "periodic (5000 on / 5000 off)", params: { algo: "periodic", period: 5000 } },
    { label: "label noise always on", params: { algo: "label-noise-sgd" } },
  ],
  steps: 200000,
  every: 500,
  replicas: 1,
  // Unsmoothed, so the staircase of the on/off windows stays sharp.
  view: { metrics: ["w_norm_mean", "a_abs_mean", "train_loss", "align_abs_cos"], smoothing: 0 },
});
