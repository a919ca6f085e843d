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
  SessionState,
  Snapshot,
  StateArray,
} from "../experiments/types.ts";
import { hasNonFinite, isSnapshotStep, StepClock } from "./snapshots.ts";
import { checkSessionState, newSessionState, stateArray } from "./session_state.ts";

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
  /** The experiment's state arrays and counters (docs/checkpoints.md), for exportState(). */
  save?(): { arrays: Record<string, StateArray>; counters?: Record<string, number> };
  /** Sets the experiment's state from a checkpoint (arrays of any backend's precision). */
  load?(state: SessionState): void;
  /** A checkpoint to continue from instead of step 0. */
  state?: SessionState;
}

export function steppedReferenceSession(opts: SteppedReferenceOptions): KernelSession {
  const { spec } = opts;
  const R = spec.replicas;
  const diverged = new Int32Array(R).fill(-1);
  const clock = new StepClock(spec.steps);
  if (opts.state) {
    checkSessionState(opts.state, spec);
    if (!opts.load) throw new Error(`checkpoint: ${spec.experiment} cannot be restored here`);
    diverged.set(stateArray(opts.state, "diverged", R));
    opts.load(opts.state);
    clock.restore(opts.state.step, opts.state.wallMs);
  }

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
    exportState: opts.save && (() => {
      const { arrays, counters } = opts.save!();
      const state = newSessionState(spec, "reference", clock.step, clock.elapsedMs, {
        ...arrays,
        diverged: Float64Array.from(diverged),
      }, counters);
      return Promise.resolve(state);
    }),
    dispose() {},
  };
}
