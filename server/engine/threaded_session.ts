/**
 * A run's replicas split across several workers (`--threads`): one KernelSession over N shard
 * sessions (server/experiments/shard.ts), each in its own Worker, advanced together and merged
 * (shard_merge.ts) into exactly the results one session of the whole run gives, bit for bit:
 * every random draw and data seed is keyed by the global replica, so a shard computes what the
 * whole run computes for its replicas. Split only where it is safe and worth it: CPU backends
 * (wasm, reference; one GPU is one device), experiments whose events are all per replica
 * (MERGEABLE_EXPERIMENTS), and at least MIN_REPLICAS_PER_THREAD replicas per worker; anything
 * else opens one worker session as before, so a one-replica run starts as fast as ever.
 */
import type { AdvanceOptions, KernelSession, RunSpec, SessionState } from "../experiments/types.ts";
import { type ShardRange, shardSpec } from "../experiments/shard.ts";
import { SpecError } from "../experiments/schema.ts";
import { openWorkerSession, recycleColumns } from "./worker_session.ts";
import { mergeShardResults } from "./shard_merge.ts";
import { composeShardStates, shardRangesOf, splitSessionState } from "./shard_state.ts";
import { MERGEABLE_EXPERIMENTS } from "../experiments/shard.ts";

/** Fewer replicas per worker than this are not worth a worker's start-up and messages. */
export const MIN_REPLICAS_PER_THREAD = 2;

/** Default threads of `deno task serve`: every core but one, which serves HTTP and streams. */
export function defaultServerThreads(): number {
  return Math.max(1, (navigator.hardwareConcurrency || 1) - 1);
}

/** Default threads of `lab run`: every core. */
export function defaultCliThreads(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

export interface ThreadOptions {
  /** Workers at most for this run (1: one session). */
  threads: number;
  /** Opens one (shard) session; tests inject one, the default puts each in a Worker. */
  open?: (spec: RunSpec, state?: SessionState) => Promise<KernelSession>;
  /**
   * Opens a run that is not split (default: `open`). The CLI opens it in its own thread: it has
   * nothing else to serve meanwhile, and a Worker's start (a second isolate loading the module
   * graph and compiling the kernel) took 0.10–0.17 s where opening in this thread took 0.01–0.02 s.
   */
  single?: (spec: RunSpec, state?: SessionState) => Promise<KernelSession>;
}

/**
 * How `spec` (its backend resolved) is split across at most `threads` workers: consecutive,
 * balanced replica ranges, or null for one session.
 */
export function threadPlan(spec: RunSpec, threads: number): ShardRange[] | null {
  if (!onCpu(spec) || !MERGEABLE_EXPERIMENTS.has(spec.experiment)) return null;
  const parts = Math.min(Math.floor(threads), Math.floor(spec.replicas / MIN_REPLICAS_PER_THREAD));
  if (!(parts >= 2)) return null;
  const ranges = balancedRanges(spec.replicas, parts);
  try {
    for (const r of ranges) shardSpec(spec, r.first, r.count);
  } catch (e) {
    if (e instanceof SpecError) return null; // replicas tied together: one session
    throw e;
  }
  return ranges;
}

/** `parts` consecutive ranges covering `replicas`, sizes differing by at most one. */
export function balancedRanges(replicas: number, parts: number): ShardRange[] {
  const out: ShardRange[] = [];
  const base = Math.floor(replicas / parts);
  let first = 0;
  for (let i = 0; i < parts; i++) {
    const count = base + (i < replicas % parts ? 1 : 0);
    out.push({ first, count });
    first += count;
  }
  return out;
}

/**
 * Opens the run's session (its backend resolved), split across workers by threadPlan, or by
 * the ranges of a threaded checkpoint `state` whatever `threads` is now. A plain checkpoint is
 * split by replica rows (splitSessionState) when the run is split now.
 */
export async function openThreadedSession(
  spec: RunSpec,
  state: SessionState | undefined,
  options: ThreadOptions,
): Promise<KernelSession> {
  const open = options.open ?? openWorkerSession;
  const single = options.single ?? open;
  let ranges: ShardRange[] | null;
  let states: (SessionState | undefined)[];
  if (state?.shards) {
    ranges = shardRangesOf(state, spec);
    // Not splittable here (another backend): one session, which joins the shards' states.
    if (!MERGEABLE_EXPERIMENTS.has(spec.experiment) || !onCpu(spec)) {
      return single(spec, state);
    }
    states = state.shards.map((s) => s.state);
  } else {
    ranges = threadPlan(spec, options.threads);
    if (!ranges) return single(spec, state);
    if (state) {
      const split = splitSessionState(state, spec, ranges);
      if (!split) return single(spec, state);
      states = split;
    } else states = ranges.map(() => undefined);
  }
  const opened = await Promise.allSettled(
    ranges.map((r, i) => open(shardSpec(spec, r.first, r.count), states[i])),
  );
  const failed = opened.find((o) => o.status === "rejected");
  if (failed) {
    for (const o of opened) if (o.status === "fulfilled") await o.value.dispose();
    throw failed.reason;
  }
  const shards = opened.map((o) => (o as PromiseFulfilledResult<KernelSession>).value);
  return threadedSession(spec, ranges, shards);
}

/** Workers share cores, not a GPU: only the CPU backends are split. */
function onCpu(spec: RunSpec): boolean {
  return spec.backend === "wasm" || spec.backend === "reference";
}

/** The session over opened shard sessions (in replica order, at the same step). */
function threadedSession(
  spec: RunSpec,
  ranges: ShardRange[],
  shards: KernelSession[],
): KernelSession {
  return {
    backend: shards[0].backend,
    adapter: shards[0].adapter,
    threads: shards.length,
    pipelined: shards.every((s) => s.pipelined === true),
    get step() {
      return Math.min(...shards.map((s) => s.step));
    },
    async advance(target: number, options?: AdvanceOptions) {
      const results = await Promise.all(shards.map((s) => s.advance(target, options)));
      const merged = mergeShardResults(
        results.map((result, i) => ({ first: ranges[i].first, result })),
      );
      // The merge copied the shards' columns: their buffers go back to the workers for reuse.
      results.forEach((r) => r.columns && recycleColumns(r.columns));
      return merged;
    },
    async exportState() {
      const states = await Promise.all(shards.map((s) => s.exportState?.() ?? null));
      if (states.some((s) => !s)) return null; // a shard cannot read its state back: replay
      return composeShardStates(spec, ranges, states as SessionState[]);
    },
    async dispose() {
      await Promise.all(shards.map((s) => s.dispose()));
    },
  };
}
