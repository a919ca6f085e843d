/**
 * The float64 reference backend: steps each replica with the experiment's plain-TS update,
 * on the main thread or in a worker. Slow by design; it is the oracle the kernels are
 * tested against, and the same session shape (snapshots, divergence, frames) every backend
 * must reproduce.
 */
import type {
  AdvanceResult,
  Frame,
  KernelSession,
  RunEvent,
  RunSpec,
  Snapshot,
} from "../experiments/types.ts";
import { hasNonFinite, isSnapshotStep, StepClock } from "./snapshots.ts";

export interface SteppedReferenceOptions {
  spec: RunSpec;
  metricNames: string[];
  /** Advances replica r from step t to t+1 in place; returns its state for the finiteness check. */
  stepReplica(replica: number, step: number): ArrayLike<number>;
  metricsOf(replica: number): Record<string, number>;
  /** Optional per-call frame of the current state (e.g. v⊙v). */
  frame?(): Omit<Frame, "step">;
  /** Optional hook called once per step after all replicas moved (events such as phase changes). */
  afterStep?(step: number): RunEvent[];
}

export function steppedReferenceSession(opts: SteppedReferenceOptions): KernelSession {
  const { spec } = opts;
  const R = spec.replicas;
  const diverged = new Int32Array(R).fill(-1);
  const clock = new StepClock(spec.steps);

  function snapshot(at: number): Snapshot {
    const metrics: Record<string, Float32Array> = {};
    for (const name of opts.metricNames) metrics[name] = new Float32Array(R);
    for (let r = 0; r < R; r++) {
      const values = diverged[r] >= 0 ? null : opts.metricsOf(r);
      for (const name of opts.metricNames) metrics[name][r] = values ? values[name] : NaN;
    }
    return { step: at, wallMs: 0, metrics };
  }

  return {
    backend: "reference",
    adapter: "float64 TypeScript reference",
    get step() {
      return clock.step;
    },
    advance(target: number): Promise<AdvanceResult> {
      const result = clock.advance(target, () => snapshot(0), (target, result) => {
        while (clock.step < target) {
          const step = clock.step;
          for (let r = 0; r < R; r++) {
            if (diverged[r] >= 0) continue;
            const state = opts.stepReplica(r, step);
            if (hasNonFinite(state)) {
              diverged[r] = step + 1;
              result.events.push({ type: "replica_diverged", step: step + 1, replica: r });
            }
          }
          clock.step = step + 1;
          if (opts.afterStep) result.events.push(...opts.afterStep(clock.step));
          if (isSnapshotStep(clock.step, spec.every, spec.steps)) {
            result.snapshots.push(snapshot(clock.step));
          }
        }
        if (opts.frame) result.frames.push({ step: clock.step, ...opts.frame() });
      });
      return Promise.resolve(result);
    },
    dispose() {},
  };
}
