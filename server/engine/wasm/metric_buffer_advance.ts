/**
 * advance() of a wasm session whose kernel writes its snapshots into a metric buffer laid out
 * [snapshot][metric][replica] (shape-matters, linear-label-noise): as columns copied straight
 * out of the buffer when the caller asked for them (AdvanceOptions), else as snapshots.
 */
import type { AdvanceOptions, AdvanceResult, RunSpec, Snapshot } from "../../experiments/types.ts";
import { ColumnBuilder, snapshotStepsBetween } from "../snapshot_columns.ts";
import type { StepClock } from "../snapshots.ts";

export interface MetricBufferSession {
  clock: StepClock;
  spec: RunSpec;
  names: readonly string[];
  /** Writes the step-0 metrics into the buffer's first row. */
  metricsNow(): void;
  /** The buffer's first `count` rows as int32 bits (NaN payloads copied as they are). */
  bits(count: number): Int32Array;
  /** The buffer's first row as a snapshot at step 0. */
  snapshot(): Snapshot;
  /** Steps to `target`; each kernel call's snapshots go to `out`. */
  stepTo(target: number, result: AdvanceResult, out: Snapshot[] | ColumnBuilder): void;
}

export function metricBufferAdvance(
  s: MetricBufferSession,
  target: number,
  options?: AdvanceOptions,
): AdvanceResult {
  const { clock, spec } = s;
  if (options?.columns) {
    // Sized to the rows this call makes (the step-0 row included): no reallocation.
    const end = Math.min(target, spec.steps);
    const rows = snapshotStepsBetween(clock.step, end, spec.every, spec.steps) +
      (clock.initialReported ? 0 : 1);
    const columns = new ColumnBuilder(s.names, spec.replicas, rows);
    const initial = () => {
      s.metricsNow();
      columns.appendMetricBuffer(s.bits(1), 1, 0, spec.every, spec.steps);
    };
    return clock.advanceColumns(target, columns, initial, (t, r) => s.stepTo(t, r, columns));
  }
  const initial = () => {
    s.metricsNow();
    return s.snapshot();
  };
  return clock.advance(target, initial, (t, r) => s.stepTo(t, r, r.snapshots));
}
