/**
 * Shards of a run: a contiguous block of its replicas run as a run of its own (the multi-box
 * mode, server/cluster/). MINIMAL STAND-IN: the real module is built on branch `shard` and
 * replaces this file at merge; only the two signatures below are relied on by the coordinator.
 */
import type { RunSpec } from "./types.ts";

/**
 * The spec of replicas first..first+count-1 of `spec`: per-replica parameter arrays and the
 * sweep's settings sliced, `firstReplica` telling the kernels the replicas' global indices (so
 * their random streams are the one-box run's).
 */
export function shardSpec(spec: RunSpec, first: number, count: number): RunSpec {
  const params: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(spec.params)) {
    params[name] = Array.isArray(value) && value.length === spec.replicas
      ? value.slice(first, first + count)
      : value;
  }
  const out = { ...spec, params, replicas: count, firstReplica: first } as RunSpec;
  if (spec.sweep) {
    out.sweep = { ...spec.sweep, settings: spec.sweep.settings.slice(first, first + count) };
  }
  return out;
}

/** Contiguous blocks of at most `shardReplicas` replicas covering `replicas`, in order. */
export function planShards(
  replicas: number,
  shardReplicas: number,
): { first: number; count: number }[] {
  const size = Math.max(1, Math.floor(shardReplicas));
  const out: { first: number; count: number }[] = [];
  for (let first = 0; first < replicas; first += size) {
    out.push({ first, count: Math.min(size, replicas - first) });
  }
  return out;
}
