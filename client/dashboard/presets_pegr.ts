/**
 * The PEGR presets (server/experiments/pegr_presets.ts, one source of truth for the CLI,
 * the measurement script and the tests) registered with the dashboard: one run per method
 * (GD, PEGR, FGR), a sweep over σ_p (or over seeds), replicas drawn individually and
 * unsmoothed so that each σ_p has its own curve. Imported for its side effect by main.ts.
 */
import { registerPreset } from "./presets.ts";
import { type ExperimentPreset, PEGR_PRESETS } from "../../server/experiments/pegr_presets.ts";

export function toDashboardPreset(p: ExperimentPreset) {
  const first = p.runs[0].spec;
  return {
    id: p.id,
    experiment: p.experiment,
    title: p.title,
    description: `${p.description} Replicas: ${p.runs[0].replicaLabels.join(", ")}.`,
    runs: p.runs.map((r) => ({
      label: r.label,
      params: r.spec.params,
      ...(r.spec.grid ? { grid: r.spec.grid } : {}),
      ...(r.spec.zip ? { zip: r.spec.zip } : {}),
      ...(r.spec.seeds ? { seeds: r.spec.seeds } : {}),
    })),
    steps: first.steps,
    every: first.every,
    replicas: first.replicas,
    view: {
      metrics: [...p.metrics, "gamma_max", "rho_bar_max", "regulariser"],
      ylog: { signal: true, noise: true },
      smoothing: 0,
      replicas: true,
    },
  };
}

for (const preset of PEGR_PRESETS) registerPreset(toDashboardPreset(preset));
