/**
 * Session states of sharded (threaded) sessions, docs/checkpoints.md "Threaded runs": a
 * composite state records each shard's replica range and that shard's own state, so a run
 * continues on the same split whatever the thread count is when it resumes. Also the two
 * conversions to and from plain states, for the experiments whose state arrays are all rows
 * per replica ([R × …], row-major): a plain state split into shards' states (a run that
 * checkpointed unthreaded resumes threaded), and a composite joined into a plain state (a
 * threaded checkpoint resumed by a single session, e.g. on another backend).
 */
import type { RunSpec, SessionState, StateArray } from "../experiments/types.ts";
import { MERGEABLE_EXPERIMENTS, type ShardRange } from "../experiments/shard.ts";
import { checkSessionState } from "./session_state.ts";

/** A composite state of shards' states, `ranges` in replica order covering the run. */
export function composeShardStates(
  spec: RunSpec,
  ranges: ShardRange[],
  states: SessionState[],
): SessionState {
  const head = states[0];
  return {
    format: head.format,
    version: head.version,
    experiment: spec.experiment,
    step: head.step,
    backend: head.backend,
    wallMs: Math.max(...states.map((s) => s.wallMs)),
    arrays: {},
    counters: {},
    shards: ranges.map((r, i) => ({ first: r.first, count: r.count, state: states[i] })),
  };
}

/** The ranges of a composite state, checked to cover the run's replicas in order. */
export function shardRangesOf(state: SessionState, spec: RunSpec): ShardRange[] {
  const shards = state.shards ?? [];
  let next = 0;
  for (const s of shards) {
    if (s.first !== next || !Number.isInteger(s.count) || s.count < 1) break;
    if (s.state.step !== state.step || s.state.experiment !== spec.experiment) {
      throw new Error(`checkpoint: shard at replica ${s.first} is not at step ${state.step}`);
    }
    next += s.count;
  }
  if (shards.length === 0 || next !== spec.replicas) {
    throw new Error(
      `checkpoint: its shards do not cover the run's ${spec.replicas} replicas in order`,
    );
  }
  return shards.map((s) => ({ first: s.first, count: s.count }));
}

/** A composite state as one plain state of the whole run (its shards' rows concatenated). */
export function joinShardStates(state: SessionState, spec: RunSpec): SessionState {
  checkSessionState(state, spec);
  shardRangesOf(state, spec);
  const shards = state.shards!.map((s) => s.state);
  if (!MERGEABLE_EXPERIMENTS.has(spec.experiment) || shards.some((s) => s.shards)) {
    throw new Error(`checkpoint: a sharded ${spec.experiment} state cannot be joined`);
  }
  const { shards: _, ...rest } = state;
  if (shards.some((s) => s.replay)) return { ...rest, replay: true, arrays: {} };
  const arrays: Record<string, StateArray> = {};
  for (const name of Object.keys(shards[0].arrays)) {
    const parts = shards.map((s) => s.arrays[name]);
    if (parts.some((p) => !p || p.constructor !== parts[0].constructor)) {
      throw new Error(`checkpoint: array ${name} differs between the shards`);
    }
    const Ctor = parts[0].constructor as new (n: number) => StateArray;
    const out = new Ctor(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    arrays[name] = out;
  }
  return { ...rest, arrays, counters: { ...shards[0].counters } };
}

/**
 * A plain state of the whole run as the states of the shards `ranges` (each array's rows of
 * those replicas), or null where an array is not rows per replica (then the run is not split).
 */
export function splitSessionState(
  state: SessionState,
  spec: RunSpec,
  ranges: ShardRange[],
): SessionState[] | null {
  if (!MERGEABLE_EXPERIMENTS.has(spec.experiment) || state.shards) return null;
  const R = spec.replicas;
  const arrays = Object.entries(state.arrays);
  if (arrays.some(([, a]) => a.length % R !== 0)) return null;
  return ranges.map(({ first, count }) => {
    const part: Record<string, StateArray> = {};
    for (const [name, a] of arrays) {
      const row = a.length / R;
      part[name] = a.slice(first * row, (first + count) * row);
    }
    return { ...state, arrays: part, counters: { ...state.counters } };
  });
}
