/** The first record of every run, local or served: what reproduces the run and reads its log. */
import type { BackendName, RunSpec } from "../experiments/types.ts";
import { getExperiment } from "../experiments/registry.ts";
import { codeVersion } from "../version.ts";
import { type HeaderRecord, RUNLOG_FORMAT, RUNLOG_VERSION } from "./records.ts";

export function newRunHeader(
  id: string,
  spec: RunSpec,
  backend: BackendName | string,
  adapter: string,
): HeaderRecord {
  const exp = getExperiment(spec.experiment);
  // The sweep is stored once, beside the spec: header.spec stays a plain spec (its per-replica
  // arrays reproduce the run) and header.sweep says which setting and seed each replica is.
  const { sweep, ...plain } = spec;
  return {
    type: "header",
    format: RUNLOG_FORMAT,
    version: RUNLOG_VERSION,
    id,
    spec: plain,
    ...(sweep ? { sweep } : {}),
    code_version: codeVersion(),
    backend,
    adapter,
    created: new Date().toISOString(),
    metrics: exp.metrics.map((m) => m.name),
    frames: (exp.frames ?? []).map((f) => f.name),
  };
}
