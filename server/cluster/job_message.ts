/**
 * The job message a coordinator publishes on `lab.jobs` and a worker pulls (docs/protocol.md,
 * "Records on NATS subjects"): one run, or one shard of a run's replicas. Parsing is strict
 * about the addressing fields (without them no record can say which run it belongs to) and
 * leaves the spec to validateJobSpec, whose failure ends the job `failed` instead of
 * redelivering it forever.
 */
import { validateRunSpec } from "../experiments/registry.ts";
import type { RunSpec } from "../experiments/types.ts";

export const JOB_VERSION = 1;

export interface JobMessage {
  v: number;
  run: string;
  shard: number;
  shards: number;
  /** Index of the shard's first replica in the whole run. */
  first: number;
  /** Replicas in the shard. */
  count: number;
  /** The shard's RunSpec (replicas = count); validated by the worker before it runs. */
  spec: unknown;
  checkpointIntervalMs?: number;
}

const RUN_ID = /^[A-Za-z0-9_-]+$/;

/** `<run>.<shard>`: the job's key in lab_jobs and lab_checkpoints, and its msgID prefix. */
export function jobKey(run: string, shard: number): string {
  return `${run}.${shard}`;
}

/** The job in a message's bytes, or why it is not one. */
export function parseJob(bytes: Uint8Array): { job: JobMessage } | { error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return { error: "the job message is not JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { error: "the job message is not a JSON object" };
  }
  const j = raw as Record<string, unknown>;
  if (j.v !== JOB_VERSION) return { error: `unknown job message version ${JSON.stringify(j.v)}` };
  if (typeof j.run !== "string" || !RUN_ID.test(j.run)) {
    return { error: `job "run" must be a run id ([A-Za-z0-9_-]), got ${JSON.stringify(j.run)}` };
  }
  const ints = ["shard", "shards", "first", "count"] as const;
  for (const k of ints) {
    const n = j[k];
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
      return { error: `job "${k}" must be an integer ≥ 0, got ${JSON.stringify(n)}` };
    }
  }
  if ((j.shard as number) >= (j.shards as number)) {
    return { error: `job shard ${j.shard} is not below shards ${j.shards}` };
  }
  const interval = j.checkpointIntervalMs;
  if (interval !== undefined && (typeof interval !== "number" || !(interval >= 0))) {
    return { error: `job "checkpointIntervalMs" must be a number ≥ 0` };
  }
  return { job: j as unknown as JobMessage };
}

/**
 * The job's spec as a complete RunSpec, checked as the API checks a submitted one (throws
 * SpecError naming the field), the shard's `firstReplica` included. The sweep description a
 * coordinator adds to a validated spec is not user input (a spec gives `grid`/`seeds`
 * instead): it is set aside for the check and kept.
 */
export function validateJobSpec(job: JobMessage): RunSpec {
  if (typeof job.spec !== "object" || job.spec === null || Array.isArray(job.spec)) {
    return validateRunSpec(job.spec); // throws the API's message for a body that is no object
  }
  const { sweep, ...plain } = job.spec as Record<string, unknown>;
  const spec = validateRunSpec(plain);
  if (spec.replicas !== job.count) {
    throw new Error(`the job's spec has ${spec.replicas} replicas, its count says ${job.count}`);
  }
  return sweep !== undefined ? { ...spec, sweep: sweep as RunSpec["sweep"] } : spec;
}
