/**
 * Snapshots and divergence events as every kernel session reports them, whatever wrote the
 * numbers (a wasm kernel's memory, a WebGPU readback): a diverged replica's metrics read NaN
 * from its divergence step on, and each divergence is reported once, in step order.
 */
import type { AdvanceResult, RunEvent, Snapshot } from "../experiments/types.ts";

/**
 * The snapshot at step `at`: metric `k` of replica `r` is `value(r, k)`, NaN for replicas
 * that diverged at or before `at` (divergedAt[r] ≥ 0 is the step of the divergence).
 */
export function maskDiverged(
  at: number,
  names: readonly string[],
  divergedAt: ArrayLike<number>,
  value: (r: number, k: number) => number,
): Snapshot {
  const R = divergedAt.length;
  const metrics: Record<string, Float32Array> = {};
  names.forEach((name, k) => {
    const values = new Float32Array(R);
    for (let r = 0; r < R; r++) {
      const dead = divergedAt[r] >= 0 && divergedAt[r] <= at;
      values[r] = dead ? NaN : value(r, k);
    }
    metrics[name] = values;
  });
  return { step: at, wallMs: 0, metrics };
}

/** Events marked by decidedAtUpdate(). */
const atUpdate = new WeakSet<RunEvent>();

/**
 * Marks an event that a session decides at the start of update s and dates s (an anneal or a
 * stop decided on U_s, and its note). A call that ends at s reports it only in the next call,
 * after whatever it reported on reaching s (a divergence at s, a note on snapshot s): sorted
 * by eventOrder, a call that runs through s reports them in that same order.
 */
export function decidedAtUpdate<T extends RunEvent>(event: T): T {
  atUpdate.add(event);
  return event;
}

/** At one step, the events of reaching it before those decided at the start of its update. */
export function eventOrder(a: RunEvent, b: RunEvent): number {
  return a.step - b.step || (atUpdate.has(a) ? 1 : 0) - (atUpdate.has(b) ? 1 : 0);
}

/** Orders events by eventOrder, then replica. */
export function sortByStepAndReplica(events: RunEvent[]): RunEvent[] {
  return events.sort((a, b) =>
    eventOrder(a, b) ||
    (a as { replica: number }).replica - (b as { replica: number }).replica
  );
}

/**
 * The snapshot at step `at` from a kernel's metric buffer laid out [snapshot][metric][replica]
 * in float32 at byte offset `ptr` of `memory`; `index` is the snapshot's place in the buffer.
 */
export function metricBufferSnapshot(
  memory: ArrayBuffer,
  ptr: number,
  index: number,
  names: readonly string[],
  R: number,
  at: number,
): Snapshot {
  const M = names.length;
  const metrics: Record<string, Float32Array> = {};
  names.forEach((name, q) => {
    metrics[name] = new Float32Array(memory, ptr + (index * M + q) * R * 4, R).slice();
  });
  return { step: at, wallMs: 0, metrics };
}

/**
 * replica_diverged for the replicas a kernel froze (diverged[r] ≥ 0, its divergence step)
 * that were not reported yet, in step order; marks them in `reported`.
 */
export function newDivergences(diverged: Float64Array, reported: Uint8Array): RunEvent[] {
  const events: RunEvent[] = [];
  diverged.forEach((at, replica) => {
    if (at >= 0 && !reported[replica]) {
      reported[replica] = 1;
      events.push({ type: "replica_diverged", step: at, replica });
    }
  });
  return events.sort((a, b) => a.step - b.step);
}

/** A synchronous advance() as a promise: an error (a kernel trap) rejects it instead of throwing. */
export function settled<T = AdvanceResult>(advanceNow: () => T): Promise<T> {
  try {
    return Promise.resolve(advanceNow());
  } catch (e) {
    return Promise.reject(e);
  }
}
