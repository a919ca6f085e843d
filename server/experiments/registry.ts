/** Every experiment the lab knows, by id, and run-spec validation against their schemas. */
import { type FieldError, resolveParams, SpecError } from "./schema.ts";
import { expandSweep, MAX_SEEDS, type SweepInput } from "./sweep.ts";
import type { BackendChoice, ExperimentDefinition, RunSpec } from "./types.ts";
import { shapeMatters } from "./shape_matters.ts";
import { largeLr } from "./large_lr.ts";
import { labelNoiseAnneal } from "./label_noise_anneal.ts";
import { linearLabelNoise } from "./linear_label_noise.ts";
import { pegr } from "./pegr.ts";

// deno-lint-ignore no-explicit-any
export const EXPERIMENTS: Record<string, ExperimentDefinition<any>> = {
  [shapeMatters.id]: shapeMatters,
  [largeLr.id]: largeLr,
  [labelNoiseAnneal.id]: labelNoiseAnneal,
  [linearLabelNoise.id]: linearLabelNoise,
  [pegr.id]: pegr,
};

export const BACKEND_CHOICES: BackendChoice[] = ["auto", "wasm", "webgpu", "reference"];
export const MAX_REPLICAS = 65536;
// The Philox counter holds the step in 32 bits; beyond that the noise would repeat.
export const MAX_STEPS = 0xFFFFFFFF;

// deno-lint-ignore no-explicit-any
export function getExperiment(id: string): ExperimentDefinition<any> {
  const e = EXPERIMENTS[id];
  if (!e) {
    throw new SpecError([{
      field: "experiment",
      message: `unknown experiment ${JSON.stringify(id)}; known: ${
        Object.keys(EXPERIMENTS).join(", ")
      }`,
    }]);
  }
  return e;
}

function intField(
  input: Record<string, unknown>,
  name: string,
  fallback: number,
  min: number,
  max: number,
  errors: FieldError[],
): number {
  const v = input[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    errors.push({
      field: name,
      message: `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`,
    });
    return fallback;
  }
  return v;
}

/**
 * Validates a user's spec (API body or CLI flags) into a complete RunSpec; omitted fields
 * take their defaults. Throws SpecError listing every bad field and what is allowed.
 */
export function validateRunSpec(input: unknown): RunSpec {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new SpecError([{
      field: "(body)",
      message: 'must be a JSON object with at least "experiment"',
    }]);
  }
  const body = input as Record<string, unknown>;
  const known = new Set([
    "experiment",
    "params",
    "replicas",
    "steps",
    "every",
    "backend",
    "name",
    "tags",
    "note",
    "grid",
    "zip",
    "seeds",
    "firstReplica",
  ]);
  const errors: FieldError[] = [];
  for (const k of Object.keys(body)) {
    if (!known.has(k)) {
      errors.push({ field: k, message: `unknown field; allowed: ${[...known].join(", ")}` });
    }
  }
  if (typeof body.experiment !== "string") {
    throw new SpecError([...errors, {
      field: "experiment",
      message: `required; one of ${Object.keys(EXPERIMENTS).join(", ")}`,
    }]);
  }
  const exp = getExperiment(body.experiment);
  const sweepIn = sweepInput(body, errors);
  const steps = intField(body, "steps", exp.defaults.steps, 0, MAX_STEPS, errors);
  const every = intField(
    body,
    "every",
    Math.min(exp.defaults.every, Math.max(1, steps)),
    1,
    MAX_STEPS,
    errors,
  );
  let backend: BackendChoice = "auto";
  if (body.backend !== undefined) {
    if (
      typeof body.backend !== "string" || !BACKEND_CHOICES.includes(body.backend as BackendChoice)
    ) {
      errors.push({
        field: "backend",
        message: `must be one of ${BACKEND_CHOICES.join(", ")}, got ${
          JSON.stringify(body.backend)
        }`,
      });
    } else backend = body.backend as BackendChoice;
  }
  const labels = validateLabels(body, errors);
  const shard = validateFirstReplica(body, sweepIn !== undefined, errors);
  let paramsIn: Record<string, unknown> = {};
  if (body.params !== undefined) {
    if (typeof body.params !== "object" || body.params === null || Array.isArray(body.params)) {
      errors.push({ field: "params", message: "must be an object of parameter values" });
    } else paramsIn = { ...body.params as Record<string, unknown> };
  }
  if (!sweepIn) {
    const replicas = intField(body, "replicas", exp.defaults.replicas, 1, MAX_REPLICAS, errors);
    const params = resolveParams(exp.params, paramsIn, replicas, errors);
    if (shard.firstReplica !== undefined && shard.firstReplica + replicas > MAX_REPLICAS) {
      errors.push({
        field: "firstReplica",
        message: `the shard's replicas ${shard.firstReplica}..${
          shard.firstReplica + replicas - 1
        } go past the limit of ${MAX_REPLICAS} replicas of a run`,
      });
    }
    if (errors.length) throw new SpecError(errors);
    return { experiment: exp.id, params, replicas, steps, every, backend, ...labels, ...shard };
  }
  const expanded = expandSweep(exp.params, sweepIn, errors);
  if (!expanded) throw new SpecError(errors);
  const { arrays, sweep, replicas } = expanded;
  const settings = replicas / sweep.seeds;
  if (replicas > MAX_REPLICAS) {
    errors.push({
      field: "grid",
      message:
        `the sweep has ${replicas} replicas (${settings} settings × ${sweep.seeds} seeds), ` +
        `over the limit of ${MAX_REPLICAS} replicas`,
    });
    throw new SpecError(errors);
  }
  if (body.replicas !== undefined && body.replicas !== replicas) {
    errors.push({
      field: "replicas",
      message:
        `the sweep has ${replicas} replicas (${settings} settings × ${sweep.seeds} seeds); ` +
        "omit replicas or give that number",
    });
  }
  for (const name of Object.keys(arrays)) {
    if (Object.hasOwn(paramsIn, name)) {
      errors.push({ field: `params.${name}`, message: "is also swept in grid; give it once" });
    }
    paramsIn[name] = arrays[name];
  }
  // Seeds vary the data (and initialisation) as well as the noise: each replica gets its own
  // data set unless the spec asks for shared data explicitly (docs/sweeps.md).
  if (sweep.seeds > 1) {
    for (const modal of ["data", "init"]) {
      const spec = exp.params[modal];
      if (
        spec?.kind === "enum" && spec.values.includes("per-replica") &&
        !Object.hasOwn(paramsIn, modal)
      ) paramsIn[modal] = "per-replica";
    }
  }
  const params = resolveParams(exp.params, paramsIn, replicas, errors);
  if (errors.length) throw new SpecError(errors);
  return { experiment: exp.id, params, replicas, steps, every, backend, ...labels, sweep };
}

/**
 * `firstReplica` (a shard of a larger run, server/experiments/shard.ts): an integer ≥ 0; 0 is
 * left out, so such a spec is the plain run it always was. A sweep names the whole grid, so a
 * shard is given as the plain spec shardSpec() writes (its per-replica lists sliced).
 */
function validateFirstReplica(
  body: Record<string, unknown>,
  sweep: boolean,
  errors: FieldError[],
): { firstReplica?: number } {
  const v = body.firstReplica;
  if (v === undefined) return {};
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= MAX_REPLICAS) {
    errors.push({
      field: "firstReplica",
      message: `must be an integer in [0, ${MAX_REPLICAS - 1}] (the shard's first replica in ` +
        `the whole run), got ${JSON.stringify(v)}`,
    });
    return {};
  }
  if (sweep && v > 0) {
    errors.push({
      field: "firstReplica",
      message: "cannot be combined with grid or seeds: give the shard's own per-replica values",
    });
    return {};
  }
  return v > 0 ? { firstReplica: v } : {};
}

/** The sweep part of a spec (`grid`, `zip`, `seeds`), or undefined for a plain run. */
function sweepInput(body: Record<string, unknown>, errors: FieldError[]): SweepInput | undefined {
  if (body.grid === undefined && body.seeds === undefined) {
    if (body.zip !== undefined) errors.push({ field: "zip", message: "needs grid" });
    return undefined;
  }
  const seeds = intField(body, "seeds", 1, 1, MAX_SEEDS, errors);
  let grid: Record<string, unknown> = {};
  if (body.grid !== undefined) {
    if (typeof body.grid !== "object" || body.grid === null || Array.isArray(body.grid)) {
      errors.push({
        field: "grid",
        message: 'must be an object of parameter lists, e.g. {"lr": [0.01, 0.02]}',
      });
    } else grid = body.grid as Record<string, unknown>;
  }
  const zip: string[][] = [];
  if (body.zip !== undefined) {
    const ok = Array.isArray(body.zip) &&
      body.zip.every((g) => Array.isArray(g) && g.every((n) => typeof n === "string"));
    if (!ok) {
      errors.push({
        field: "zip",
        message: 'must be a list of groups of swept parameter names, e.g. [["sigma_p", "sigma0"]]',
      });
    } else zip.push(...body.zip as string[][]);
  }
  return { grid, zip, seeds };
}

const MAX_TAGS = 32;
const MAX_LABEL = 120;

/** `name`, `tags` and `note`: free text a person gives a run (also editable later). */
export function validateLabels(
  body: Record<string, unknown>,
  errors: FieldError[],
): { name?: string; tags?: string[]; note?: string } {
  const out: { name?: string; tags?: string[]; note?: string } = {};
  if (body.name !== undefined) {
    if (typeof body.name !== "string" || body.name.length > MAX_LABEL) {
      errors.push({
        field: "name",
        message: `must be a string of at most ${MAX_LABEL} characters`,
      });
    } else if (body.name.trim()) out.name = body.name.trim();
  }
  if (body.tags !== undefined) {
    const tags = body.tags;
    if (
      !Array.isArray(tags) || tags.length > MAX_TAGS ||
      !tags.every((t) => typeof t === "string" && t.trim() && t.length <= MAX_LABEL)
    ) {
      errors.push({
        field: "tags",
        message:
          `must be a list of at most ${MAX_TAGS} non-empty strings of at most ${MAX_LABEL} characters`,
      });
    } else out.tags = [...new Set((tags as string[]).map((t) => t.trim()))];
  }
  if (body.note !== undefined) {
    if (typeof body.note !== "string" || body.note.length > 10000) {
      errors.push({ field: "note", message: "must be a string of at most 10000 characters" });
    } else out.note = body.note;
  }
  return out;
}
