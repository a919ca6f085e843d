/**
 * Measures what the PEGR presets show (the numbers quoted in docs/experiments/pegr.md):
 * runs every run of a preset to the end and prints, per method and replica, the metrics at
 * the switch-off step and at the end, then the final test accuracy per method. Not a test;
 * run it at low priority:
 *   nice -n 10 deno run -A test/pegr_measure.ts --preset=paper|theory|seeds
 *     [--backend=reference|wasm|webgpu|auto] [--seeds=5] [--sigma-p=1]
 *     [--params='{"lr":0.1,"pegr_off":800}'] [--steps=1600]
 * --params and --steps override every run of the preset (e.g. a time-rescaled variant).
 */
import { parseArgs } from "node:util";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { openSession } from "../server/engine/open.ts";
import type { BackendChoice, Snapshot } from "../server/experiments/types.ts";
import {
  type ExperimentPreset,
  PEGR_PAPER_SETTINGS,
  PEGR_THEORY_REGIME,
  theoryRegimeSeeds,
} from "../server/experiments/pegr_presets.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "paper" },
    backend: { type: "string", default: "reference" },
    seeds: { type: "string", default: "5" },
    "sigma-p": { type: "string", default: "1" },
    params: { type: "string", default: "{}" },
    steps: { type: "string" },
  },
});
const backend = flags.backend as BackendChoice;
const preset: ExperimentPreset = flags.preset === "paper"
  ? PEGR_PAPER_SETTINGS
  : flags.preset === "theory"
  ? PEGR_THEORY_REGIME
  : theoryRegimeSeeds(Number(flags.seeds), Number(flags["sigma-p"]));
const overrides = JSON.parse(flags.params as string) as Record<string, unknown>;
for (const run of preset.runs) {
  run.spec.params = { ...run.spec.params, ...overrides };
  if (flags.steps) run.spec.steps = Number(flags.steps);
}

const SHOWN = ["train_loss", "signal", "noise", "test_accuracy", "gamma_max", "rho_bar_max"];
const fmt = (x: number) => (Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(3) : x.toExponential(1));

console.log(`# ${preset.title} (backend ${backend}, overrides ${JSON.stringify(overrides)})`);
console.log(
  `| method | replica | at switch-off: ${SHOWN.join(", ")} | at the end: ${SHOWN.join(", ")} |`,
);
console.log("|---|---|---|---|");
const summary: Record<string, number[]> = {};
for (const run of preset.runs) {
  const t0 = performance.now();
  const every = (run.spec.params.pegr_off as number) || run.spec.steps;
  const spec = validateRunSpec({ ...run.spec, every, backend });
  const off = spec.params.pegr_off as number;
  const session = await openSession(spec);
  const atOff = (await session.advance(off)).snapshots.at(-1) as Snapshot;
  const end = (await session.advance(spec.steps)).snapshots.at(-1) as Snapshot;
  await session.dispose();
  for (let r = 0; r < spec.replicas; r++) {
    const row = (s: Snapshot) => SHOWN.map((k) => fmt(s.metrics[k][r])).join(", ");
    console.log(`| ${run.label} | ${run.replicaLabels[r]} | ${row(atOff)} | ${row(end)} |`);
  }
  summary[run.label] = Array.from(end.metrics.test_accuracy);
  console.error(`${run.label}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
console.log("\nfinal test accuracy per method:", JSON.stringify(summary));
