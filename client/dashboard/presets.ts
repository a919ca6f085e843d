/**
 * Presets: one click starts a paper's comparison, named after the figure it reproduces.
 * Each experiment registers its own; runs in a preset share the data seed so that the
 * curves differ only by the algorithm.
 */
import type { ViewState } from "./state.ts";

export interface PresetRun {
  label: string;
  params: Record<string, unknown>;
  /** A sweep (docs/sweeps.md): the run's replicas are grid × seeds instead of `replicas`. */
  grid?: Record<string, unknown>;
  zip?: string[][];
  seeds?: number;
}

export interface Preset {
  id: string;
  experiment: string;
  /** The figure it reproduces, e.g. "Shape Matters, Fig. 1 (right): …". */
  title: string;
  description: string;
  runs: PresetRun[];
  steps: number;
  every: number;
  replicas: number;
  /** View settings applied when the preset starts (its runs are always shown). */
  view?: Partial<Omit<ViewState, "runs">>;
}

export interface PresetOverrides {
  steps?: number;
  every?: number;
  replicas?: number;
  backend?: string;
}

const registry: Preset[] = [];

export function registerPreset(preset: Preset): void {
  if (registry.some((p) => p.id === preset.id)) throw new Error(`duplicate preset ${preset.id}`);
  registry.push(preset);
}

export function presets(): readonly Preset[] {
  return registry;
}

export function findPreset(id: string): Preset | undefined {
  return registry.find((p) => p.id === id);
}

/** The POST /api/runs bodies a preset starts, with the user's overrides applied. */
export function presetSpecs(preset: Preset, o: PresetOverrides = {}): Record<string, unknown>[] {
  const steps = o.steps ?? preset.steps;
  return preset.runs.map((run) => ({
    experiment: preset.experiment,
    name: run.label,
    params: run.params,
    // A sweep's replica count follows from its grid and seeds.
    ...(run.grid || run.seeds
      ? {
        ...(run.grid ? { grid: run.grid } : {}),
        ...(run.zip ? { zip: run.zip } : {}),
        ...(run.seeds ? { seeds: run.seeds } : {}),
      }
      : { replicas: o.replicas ?? preset.replicas }),
    steps,
    every: Math.max(1, Math.min(o.every ?? preset.every, steps)),
    backend: o.backend ?? "auto",
  }));
}

// Shape Matters (seed-003), Fig. 1 (right): from a large initialisation v0 = 1, label noise
// and mini-batch noise drive v⊙v to the sparse truth; GD and spherical Gaussian noise stay
// dense. Same data seed for all four; paper constants (d=100, n=40, r=5, lr=0.01, δ=1).
const SHAPE_MATTERS_SEED = 123;
registerPreset({
  id: "shape-matters-fig1-right",
  experiment: "shape-matters",
  title: "Shape Matters, Fig. 1 (right): GD vs label noise vs mini-batch noise vs Gaussian noise",
  description:
    "Same data (seed 123), v0 = 1, lr 0.01, δ = 1: label noise finds the 5-sparse v* while GD and Gaussian noise stay dense; mini-batch noise helps only partly and can diverge at this lr (one replica does at seed 123, as the notes report).",
  runs: [
    { label: "GD", params: { algo: "gd", seed: SHAPE_MATTERS_SEED } },
    { label: "label noise", params: { algo: "label-noise", seed: SHAPE_MATTERS_SEED } },
    { label: "mini-batch noise", params: { algo: "minibatch-noise", seed: SHAPE_MATTERS_SEED } },
    { label: "Gaussian noise", params: { algo: "gaussian", seed: SHAPE_MATTERS_SEED } },
  ],
  steps: 300000,
  every: 1000,
  replicas: 4,
  view: { metrics: ["test_error", "train_loss", "support_size", "v_norm"] },
});
