/**
 * Checkpoint cost per experiment, for the largest run of its dashboard presets (by the
 * experiment's memory estimate): bytes of the checkpoint file and milliseconds to take it
 * (exportState in the session's thread) and to write it atomically (encode, SHA-256, write,
 * fsync, rename), median of 5, on the wasm backend or the one named (webgpu: exportState reads
 * the device's buffers back).
 *   deno run -A test/checkpoint_cost.ts [--backend=webgpu]
 */
import "../client/dashboard/presets_pq.ts";
import "../client/dashboard/presets_linear_label_noise.ts";
import "../client/dashboard/presets_pegr.ts";
import { presets, presetSpecs } from "../client/dashboard/presets.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { RunSpec } from "../server/experiments/types.ts";
import { openSession } from "../server/engine/open.ts";
import { saveRunCheckpoint } from "../server/runs/checkpoints.ts";
import { ensureWasm } from "../server/build_wasm.ts";

await ensureWasm();

const backend = (Deno.args.find((a) => a.startsWith("--backend="))?.slice(10) ?? "wasm") as
  | "wasm"
  | "webgpu"
  | "reference";

const largest = new Map<string, { spec: RunSpec; preset: string; bytes: number }>();
for (const preset of presets()) {
  for (const body of presetSpecs(preset, { backend })) {
    const spec = validateRunSpec(body);
    const bytes = getExperiment(spec.experiment).estimateBytes(spec);
    const best = largest.get(spec.experiment);
    if (!best || bytes > best.bytes) {
      largest.set(spec.experiment, { spec, preset: preset.id, bytes });
    }
  }
}

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = await Deno.makeTempDir({ prefix: "lab-ckpt-cost-" });
console.log("| experiment | preset | replicas | state arrays | bytes | export ms | write ms |");
console.log("|---|---|---|---|---|---|---|");
for (const [experiment, { spec, preset }] of largest) {
  const session = await openSession(spec);
  await session.advance(Math.min(spec.steps, spec.every));
  const exportMs: number[] = [], writeMs: number[] = [];
  let bytes = 0, arrays = "";
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const state = (await session.exportState!())!;
    const t1 = performance.now();
    bytes = await saveRunCheckpoint(`${dir}/${experiment}.ckpt`, "cost", {
      seq: 1,
      step: state.step,
      diverged: [],
      state,
    });
    writeMs.push(performance.now() - t1);
    exportMs.push(t1 - t0);
    arrays = Object.entries(state.arrays).map(([k, v]) => `${k}[${v.length}]`).join(" ");
  }
  await session.dispose();
  console.log(
    `| ${experiment} | ${preset} | ${spec.replicas} | ${arrays} | ${bytes} | ${
      median(exportMs).toFixed(2)
    } | ${median(writeMs).toFixed(2)} |`,
  );
}
await Deno.remove(dir, { recursive: true });
