/**
 * Snapshots column-wise (SnapshotColumns): what a session reports when its caller asks for
 * columns (AdvanceOptions), and what the run log stores as one `snapshots` record. At a
 * snapshot every step a run makes a million snapshots a second; an object and R-value
 * Float32Array per metric per snapshot costs more than the step itself, so the fast path
 * never makes them. These helpers convert between the two forms; both carry the same numbers.
 */
import type { AdvanceResult, Snapshot, SnapshotColumns } from "../experiments/types.ts";

/** Snapshots (each metric's R values) as columns. */
export function columnsOf(
  snapshots: readonly Snapshot[],
  replicas: number,
  names: readonly string[] = snapshots.length ? Object.keys(snapshots[0].metrics) : [],
): SnapshotColumns {
  const n = snapshots.length;
  const steps = new Float64Array(n);
  const wallMs = new Float64Array(n);
  const metrics: Record<string, Float32Array> = {};
  for (const name of names) metrics[name] = new Float32Array(n * replicas);
  snapshots.forEach((s, i) => {
    steps[i] = s.step;
    wallMs[i] = s.wallMs;
    for (const name of names) {
      const v = s.metrics[name];
      if (v) metrics[name].set(v.subarray(0, replicas), i * replicas);
      else metrics[name].fill(NaN, i * replicas, (i + 1) * replicas);
    }
  });
  return { replicas, steps, wallMs, metrics };
}

/** The snapshots of a result as columns, whichever form the session reported them in. */
export function resultColumns(result: AdvanceResult, replicas: number): SnapshotColumns {
  return result.columns ?? columnsOf(result.snapshots, replicas);
}

/** Row `i` as a Snapshot (its own copies of the values). */
export function rowSnapshot(c: SnapshotColumns, i: number): Snapshot {
  const R = c.replicas;
  const metrics: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(c.metrics)) {
    metrics[name] = v.slice(i * R, (i + 1) * R);
  }
  return { step: c.steps[i], wallMs: c.wallMs[i], metrics };
}

/** Every row as a Snapshot. */
export function snapshotsOf(c: SnapshotColumns): Snapshot[] {
  return Array.from({ length: c.steps.length }, (_, i) => rowSnapshot(c, i));
}

/** Rows [from, to) as columns viewing the same memory (no copy). */
export function sliceColumns(c: SnapshotColumns, from: number, to: number): SnapshotColumns {
  const R = c.replicas;
  const metrics: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(c.metrics)) {
    metrics[name] = v.subarray(from * R, to * R);
  }
  return {
    replicas: R,
    steps: c.steps.subarray(from, to),
    wallMs: c.wallMs.subarray(from, to),
    metrics,
  };
}

/** Number of rows. */
export function columnRows(c: SnapshotColumns): number {
  return c.steps.length;
}
