/**
 * Shards: a run's replicas [first, first + count) as a run of its own, to spread one batch over
 * several machines and merge the results back (docs/sweeps.md "Shards").
 *
 * Every random draw is a pure function of its Philox key (seed, replica) and counter, and
 * per-replica data seeds are seed + replica, so a shard that keys replica k as the whole run's
 * replica firstReplica + k (RunSpec.firstReplica, honoured by every experiment and backend)
 * computes exactly the numbers the whole run computes for those replicas: a shard's snapshot
 * values of replica k equal the whole run's replica firstReplica + k, bit for bit on the same
 * backend. What a merger does: snapshot and frame rows of shard replica k, and the `replica`
 * field of its events, go to replica firstReplica + k; event texts already name that replica.
 */
import { SpecError } from "./schema.ts";
import { getExperiment } from "./registry.ts";
import type { RunSpec } from "./types.ts";

/**
 * Experiments whose shards merge back into exactly the whole run's records, events included:
 * every event their sessions emit is about one replica (divergence, lazy escape) or planned
 * (the same in every shard), and every array of their state is rows per replica. large-lr and
 * label-noise-anneal are not: their notes quote values over all replicas, the order of a step's
 * events depends on when the session decided them (which a merger cannot see), and noise pairs
 * tie replica k to k + R/2. Threads (server/engine/threaded_session.ts) and the multi-box
 * coordinator (server/cluster/coordinator.ts) split only these; the others run as one piece.
 */
export const MERGEABLE_EXPERIMENTS: ReadonlySet<string> = new Set([
  "shape-matters",
  "pegr",
  "linear-label-noise",
]);

export interface ShardRange {
  /** First replica of the shard, in the whole run's numbering. */
  first: number;
  count: number;
}

/**
 * The spec of replicas [first, first + count) of `spec`: per-replica parameter lists and the
 * sweep's settings are sliced, `replicas` is count and `firstReplica` the global index of its
 * replica 0 (a shard of a shard adds up). Throws SpecError for a range outside the run, or for
 * a run whose replicas depend on each other (large-lr's noise pairs), unless it is the whole run.
 */
export function shardSpec(spec: RunSpec, first: number, count: number): RunSpec {
  if (
    !Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 1 ||
    first + count > spec.replicas
  ) {
    throw new SpecError([{
      field: "firstReplica",
      message: `a shard must be a range of the run's ${spec.replicas} replicas, got ${
        JSON.stringify(first)
      } + ${JSON.stringify(count)}`,
    }]);
  }
  if (first === 0 && count === spec.replicas) return spec;
  if (spec.params.noise_pairs === "on") {
    throw new SpecError([{
      field: "params.noise_pairs",
      message: "on pairs replica k with k + R/2 of the whole run: it cannot be sharded",
    }]);
  }
  const schema = getExperiment(spec.experiment).params;
  const params = { ...spec.params };
  for (const [name, value] of Object.entries(params)) {
    const p = Object.hasOwn(schema, name) ? schema[name] : undefined;
    if (p && (p.kind === "number" || p.kind === "int") && p.perReplica && Array.isArray(value)) {
      params[name] = (value as number[]).slice(first, first + count);
    }
  }
  const out: RunSpec = { ...spec, params, replicas: count };
  const firstReplica = (spec.firstReplica ?? 0) + first;
  if (firstReplica > 0) out.firstReplica = firstReplica;
  else delete out.firstReplica;
  if (spec.sweep) {
    out.sweep = { ...spec.sweep, settings: spec.sweep.settings.slice(first, first + count) };
  }
  return out;
}

/**
 * Consecutive shards of at most `shardReplicas` replicas covering `replicas`, in replica order
 * (the last may be smaller).
 */
export function planShards(replicas: number, shardReplicas: number): ShardRange[] {
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new RangeError(`replicas must be an integer ≥ 1, got ${replicas}`);
  }
  if (!Number.isInteger(shardReplicas) || shardReplicas < 1) {
    throw new RangeError(`shard size must be an integer ≥ 1, got ${shardReplicas}`);
  }
  const out: ShardRange[] = [];
  for (let first = 0; first < replicas; first += shardReplicas) {
    out.push({ first, count: Math.min(shardReplicas, replicas - first) });
  }
  return out;
}
