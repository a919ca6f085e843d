/**
 * Builds a run spec from CLI flags, through the same validator the API uses. A per-replica
 * parameter given a list or a range (`--delta=0.25,0.5,1,2`, `--lr=1e-3..1e-1:5:log`) is a
 * swept parameter (the API's `grid`); `--seeds=K` repeats every setting over K seeds.
 */
import { getExperiment, validateRunSpec } from "../experiments/registry.ts";
import { parseCliValue } from "../experiments/schema.ts";
import { looksLikeSweep } from "../experiments/sweep.ts";
import type { RunSpec } from "../experiments/types.ts";
import { closest, UsageError, WASM_FMA_HELP } from "./args.ts";

/** Flags of `lab run` itself (not experiment parameters), with their help text. */
export const RUN_OPTIONS: Record<string, string> = {
  replicas: "replicas in the batch (a sweep sets it: settings × seeds)",
  steps: "training steps",
  every: "steps between metric snapshots",
  backend: "auto, wasm, webgpu or reference",
  seeds: "repeat every setting over K data/initialisation seeds",
  zip: "swept parameters that vary together, e.g. --zip=sigma_p,sigma0",
  name: "a name for the run",
  tag: "a tag (repeatable: --tag=a --tag=b)",
  note: "a free-text note",
  json: "JSON Lines on stdout: snapshots, events, one summary",
  quiet: "no progress line",
  out: "directory for the run log (local runs)",
  "checkpoint-interval": "seconds of compute between checkpoints with --out (default 60, 0: off)",
  server: "submit to a running lab and follow it there",
  token: "the lab's token (also LAB_TOKEN)",
  "chunk-ms": "target compute per kernel call (local runs)",
  threads: "workers the replicas are split across, same numbers (local runs; default: every core)",
  "wasm-fma": `${WASM_FMA_HELP} (local runs)`,
  help: "this help",
};
export const RUN_FLAGS = new Set(Object.keys(RUN_OPTIONS));

const INT_OPTIONS = new Set(["replicas", "steps", "every", "seeds"]);

/** The POST /api/runs body the flags stand for (what `--server` submits). */
export function runBodyFromFlags(
  experiment: string,
  flags: Map<string, string | true>,
  all: Map<string, (string | true)[]> = new Map(),
  /** A positional argument after the experiment: likely a value written after a space. */
  stray?: string,
): Record<string, unknown> {
  const exp = getExperiment(experiment);
  const params: Record<string, unknown> = {};
  const grid: Record<string, string> = {};
  const body: Record<string, unknown> = { experiment, params };
  for (const [key, raw] of flags) {
    if (RUN_FLAGS.has(key)) {
      const needsValue = !["json", "quiet", "help"].includes(key);
      if (raw === true && needsValue) throw needsValueError(key, stray);
      if (INT_OPTIONS.has(key)) {
        const n = Number(raw);
        body[key] = Number.isNaN(n) ? raw : n;
      } else if (key === "backend" || key === "name" || key === "note") body[key] = raw;
      else if (key === "tag") body.tags = (all.get("tag") ?? [raw]).filter((t) => t !== true);
      else if (key === "zip") {
        body.zip = (all.get("zip") ?? [raw]).map((g) => String(g).split(",").map((s) => s.trim()));
      }
      continue;
    }
    const name = key.replaceAll("-", "_");
    const spec = Object.hasOwn(exp.params, name) ? exp.params[name] : undefined;
    if (!spec) {
      const known = [...Object.keys(exp.params), ...RUN_FLAGS];
      const guess = closest(name, known) ?? closest(key, known);
      throw new UsageError(
        `unknown option --${key} for ${experiment}${guess ? ` (did you mean --${guess}?)` : ""}; ` +
          `parameters: ${Object.keys(exp.params).map((p) => "--" + p).join(", ")}; ` +
          `run options: ${[...RUN_FLAGS].map((p) => "--" + p).join(", ")} ` +
          `(see: deno task lab run ${experiment} --help)`,
      );
    }
    if (raw === true && spec.kind !== "boolean") throw needsValueError(key, stray);
    if ((spec.kind === "number" || spec.kind === "int") && looksLikeSweep(raw as string)) {
      grid[name] = raw as string;
    } else params[name] = raw === true ? true : parseCliValue(spec, raw);
  }
  if (Object.keys(grid).length) body.grid = grid;
  return body;
}

export function specFromFlags(
  experiment: string,
  flags: Map<string, string | true>,
  all: Map<string, (string | true)[]> = new Map(),
): RunSpec {
  return validateRunSpec(runBodyFromFlags(experiment, flags, all));
}

function needsValueError(key: string, stray?: string): UsageError {
  return new UsageError(
    `--${key} needs a value: write --${key}=${stray ?? "VALUE"} with "=" ` +
      "(a value after a space is not read)",
  );
}
