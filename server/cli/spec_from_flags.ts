/** Builds a run spec from CLI flags, through the same validator the API uses. */
import { getExperiment, validateRunSpec } from "../experiments/registry.ts";
import { parseCliValue } from "../experiments/schema.ts";
import type { RunSpec } from "../experiments/types.ts";
import { UsageError } from "./args.ts";

/** Flags that belong to the CLI itself rather than to the experiment's parameters. */
export const RUN_FLAGS = new Set([
  "replicas",
  "steps",
  "every",
  "backend",
  "json",
  "out",
  "server",
  "token",
  "quiet",
  "chunk-ms",
  "checkpoint-interval",
  "name",
]);

export function specFromFlags(experiment: string, flags: Map<string, string | true>): RunSpec {
  const exp = getExperiment(experiment);
  const params: Record<string, unknown> = {};
  const body: Record<string, unknown> = { experiment, params };
  for (const [key, raw] of flags) {
    if (RUN_FLAGS.has(key)) {
      if (key === "replicas" || key === "steps" || key === "every") {
        const n = Number(raw);
        body[key] = raw === true || Number.isNaN(n) ? raw : n;
      } else if (key === "backend") body.backend = raw;
      continue;
    }
    const name = key.replaceAll("-", "_");
    const spec = exp.params[name];
    if (!spec) {
      throw new UsageError(
        `unknown option --${key} for ${experiment}; parameters: ${
          Object.keys(exp.params).map((p) => "--" + p).join(", ")
        } (see: deno task lab show ${experiment})`,
      );
    }
    params[name] = raw === true ? (spec.kind === "boolean" ? true : "") : parseCliValue(spec, raw);
  }
  return validateRunSpec(body);
}
