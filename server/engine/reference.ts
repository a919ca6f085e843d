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
import { hasNonFinite, isSnapshotStep, stampWallTimes } from "./snapshots.ts";

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
  let step = 0;
  let reportedInitial = false;
  const startMs = performance.now();

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
      return step;
    },
    advance(target: number): Promise<AdvanceResult> {
      const t0 = performance.now() - startMs;
      const from = step;
      const result: AdvanceResult = { snapshots: [], events: [], frames: [] };
      target = Math.min(target, spec.steps);
      if (!reportedInitial) {
        result.snapshots.push(snapshot(0));
        reportedInitial = true;
      }
      while (step < target) {
        for (let r = 0; r < R; r++) {
          if (diverged[r] >= 0) continue;
          const state = opts.stepReplica(r, step);
          if (hasNonFinite(state)) {
            diverged[r] = step + 1;
            result.events.push({ type: "replica_diverged", step: step + 1, replica: r });
          }
        }
        step++;
        if (opts.afterStep) result.events.push(...opts.afterStep(step));
        if (isSnapshotStep(step, spec.every, spec.steps)) result.snapshots.push(snapshot(step));
      }
      if (opts.frame) result.frames.push({ step, ...opts.frame() });
      stampWallTimes(result.snapshots, from, step, t0, performance.now() - startMs);
      return Promise.resolve(result);
    },
    dispose() {},
  };
}
