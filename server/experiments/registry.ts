/** Every experiment the lab knows, by id, and run-spec validation against their schemas. */
import { type FieldError, resolveParams, SpecError } from "./schema.ts";
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
  const known = new Set(["experiment", "params", "replicas", "steps", "every", "backend", "name"]);
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
  const replicas = intField(body, "replicas", exp.defaults.replicas, 1, MAX_REPLICAS, errors);
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
  let name: string | undefined;
  if (body.name !== undefined) {
    if (typeof body.name !== "string" || body.name.length > 120) {
      errors.push({ field: "name", message: "must be a string of at most 120 characters" });
    } else if (body.name.trim()) name = body.name.trim();
  }
  let paramsIn: Record<string, unknown> = {};
  if (body.params !== undefined) {
    if (typeof body.params !== "object" || body.params === null || Array.isArray(body.params)) {
      errors.push({ field: "params", message: "must be an object of parameter values" });
    } else paramsIn = body.params as Record<string, unknown>;
  }
  const params = resolveParams(exp.params, paramsIn, replicas, errors);
  if (errors.length) throw new SpecError(errors);
  return { experiment: exp.id, params, replicas, steps, every, backend, ...(name ? { name } : {}) };
}
