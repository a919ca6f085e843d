/**
 * Presets for the PEGR experiment: the two readings of the paper's synthetic experiment
 * (§4.1), one run per method (GD, PEGR, FGR), each a sweep over σ_p (zipped with the σ0 the
 * paper pairs with it), so a dashboard draws one curve per σ_p and method and never averages
 * across σ_p. Plain data (JSON-serialisable run specs), so the dashboard,
 * the CLI, the measurement script (test/pegr_measure.ts) and the reproduction test all use
 * the same definitions. What each preset shows is documented in docs/experiments/pegr.md.
 */

export interface PresetRunSpec {
  experiment: string;
  params: Record<string, unknown>;
  /** The batch size; for a sweep, the settings × seeds the grid implies. */
  replicas: number;
  steps: number;
  every: number;
  /** A sweep (docs/sweeps.md): swept values per parameter, zipped groups, seeds per setting. */
  grid?: Record<string, number[]>;
  zip?: string[][];
  seeds?: number;
}

export interface PresetRun {
  /** Legend label of the run (the method). */
  label: string;
  spec: PresetRunSpec;
  /** Legend label of each replica (e.g. "σp=0.5"). */
  replicaLabels: string[];
}

/**
 * A chart the dashboard draws for every run of a preset. `overlay` plots several metrics
 * against the step on one axis (one line style per metric, one colour per replica).
 */
export interface PresetPanel {
  id: string;
  title: string;
  kind: "overlay";
  metrics: { name: string; dash?: number[] }[];
  yScale: "linear" | "log";
  /** Values at or below this are drawn at it on a log axis (noise under PEGR reaches ~1e-16). */
  yFloor?: number;
  doc: string;
}

export interface ExperimentPreset {
  id: string;
  experiment: string;
  title: string;
  description: string;
  runs: PresetRun[];
  panels: PresetPanel[];
  /** Metrics to chart first (one small chart each), in order. */
  metrics: string[];
}

const SIGMA_P = [0.1, 0.5, 1, 1.5];
/** §4.1: σ0 = 0.01 for σ_p ∈ {0.5, 1}, 0.001 for σ_p = 1.5; 0.01 at σ_p = 0.1 (notes' choice). */
const SIGMA0 = [0.01, 0.01, 0.01, 0.001];
const METHODS = ["gd", "pegr", "fgr"] as const;
const LABEL: Record<(typeof METHODS)[number], string> = { gd: "GD", pegr: "PEGR", fgr: "FGR" };

/** §4.1 constants shared by both readings. */
const PAPER_CONSTANTS = { d: 400, n: 20, m: 10, mu_norm: 1, lr: 0.02, n_test: 2000, seed: 0 };

export const SIGNAL_VS_NOISE_PANEL: PresetPanel = {
  id: "pegr-signal-vs-noise",
  title: "Signal max|<w, μ>| (solid) against noise max<w, ξ_i> (dashed)",
  kind: "overlay",
  metrics: [{ name: "signal" }, { name: "noise", dash: [6, 4] }],
  yScale: "log",
  yFloor: 1e-6,
  doc:
    "Signal learning against noise memorisation over time (Figs. 2 and 3 on one axis): under GD the dashed noise curve rises to O(1) within a few hundred steps while the signal stays at its initial scale; under PEGR in the theory regime the noise falls towards 0 while PEGR is on and the signal grows. The switch-off event marks where λ becomes 0.",
};

export const COEFFICIENTS_PANEL: PresetPanel = {
  id: "pegr-coefficients",
  title: "Coefficients: max γ (solid), max ρ̄ (dashed), min ρ̲ (dotted)",
  kind: "overlay",
  metrics: [{ name: "gamma_max" }, { name: "rho_bar_max", dash: [6, 4] }, {
    name: "rho_under_min",
    dash: [2, 3],
  }],
  yScale: "linear",
  doc: "The signal–noise decomposition of Definition 5.2, recovered from the weights.",
};

function sigmaSweep(
  algo: (typeof METHODS)[number],
  extra: Record<string, unknown>,
  steps: number,
  every: number,
): PresetRun {
  return {
    label: LABEL[algo],
    spec: {
      experiment: "pegr",
      params: { ...PAPER_CONSTANTS, algo, ...extra },
      grid: { sigma_p: SIGMA_P, sigma0: SIGMA0 },
      zip: [["sigma_p", "sigma0"]],
      replicas: SIGMA_P.length,
      steps,
      every,
    },
    replicaLabels: SIGMA_P.map((s) => `σp=${s}`),
  };
}

const METRICS = ["train_loss", "signal", "noise", "test_accuracy"];

/** The experiment as §4.1 states it: λ = 0.01, 1500 steps, regulariser closed at 800. */
export const PEGR_PAPER_SETTINGS: ExperimentPreset = {
  id: "pegr-paper-settings",
  experiment: "pegr",
  title: "PEGR: paper settings (§4.1 read literally)",
  description:
    "‖μ‖ = 1, d = 400, m = 10, n = 20, η = 0.02, 1500 full-batch steps, λ = 0.01 for PEGR and FGR, closed at step 800; σ_p ∈ {0.1, 0.5, 1, 1.5} with σ0 = 0.01, 0.01, 0.01, 0.001. Here λ‖ξ‖²/m ≈ 0.4σ_p² < 1 for every σ_p, so PEGR barely differs from GD.",
  runs: METHODS.map((a) =>
    sigmaSweep(a, { lambda_mode: "fixed", lambda: 0.01, pegr_off: 800 }, 1500, 10)
  ),
  panels: [SIGNAL_VS_NOISE_PANEL, COEFFICIENTS_PANEL],
  metrics: METRICS,
};

/** The theory's λ = 1/(σ_p√d) with a longer regularised phase (notes §8). */
export const PEGR_THEORY_REGIME: ExperimentPreset = {
  id: "pegr-theory-regime",
  experiment: "pegr",
  title: "PEGR: theory regime (λ = 1/(σ_p√d), regularised for 4000 steps)",
  description:
    "The §4.1 constants with the λ of Thm 3.2, λ = 1/(σ_p√d) (0.5, 0.1, 0.05, 0.033 for σ_p = 0.1, 0.5, 1, 1.5), 8000 steps, PEGR/FGR closed at step 4000. λ‖ξ‖²/m ≈ 2σ_p exceeds 1 for σ_p ≥ 1, where PEGR learns the signal and GD and FGR memorise the noise.",
  runs: METHODS.map((a) => sigmaSweep(a, { lambda_mode: "theory", pegr_off: 4000 }, 8000, 50)),
  panels: [SIGNAL_VS_NOISE_PANEL, COEFFICIENTS_PANEL],
  metrics: METRICS,
};

/** The theory regime at σ_p = 1 over seeds (data and initialisation per replica). */
export function theoryRegimeSeeds(seeds: number, sigmaP = 1, firstSeed = 0): ExperimentPreset {
  return {
    id: "pegr-theory-regime-seeds",
    experiment: "pegr",
    title: `PEGR: theory regime at σ_p = ${sigmaP}, ${seeds} seeds`,
    description:
      "As the theory-regime preset at one σ_p, with replica k trained on data seed seed + k (its own training set, test set and initial filters).",
    runs: METHODS.map((algo) => ({
      label: LABEL[algo],
      spec: {
        experiment: "pegr",
        params: {
          ...PAPER_CONSTANTS,
          algo,
          sigma_p: sigmaP,
          sigma0: sigmaP >= 1.5 ? 0.001 : 0.01,
          lambda_mode: "theory",
          pegr_off: 4000,
          seed: firstSeed,
          data: "per-replica",
        },
        seeds,
        replicas: seeds,
        steps: 8000,
        every: 50,
      },
      replicaLabels: Array.from({ length: seeds }, (_, k) => `seed ${firstSeed + k}`),
    })),
    panels: [SIGNAL_VS_NOISE_PANEL, COEFFICIENTS_PANEL],
    metrics: METRICS,
  };
}

export const PEGR_PRESETS: ExperimentPreset[] = [
  PEGR_PAPER_SETTINGS,
  PEGR_THEORY_REGIME,
  theoryRegimeSeeds(5),
];
