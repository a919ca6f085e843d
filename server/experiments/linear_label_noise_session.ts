/**
 * Session behaviour of `linear-label-noise` shared by every backend, layered over a backend's
 * plain session so that the reference, Wasm and WebGPU runs agree by construction:
 *  - per-neuron frames at fixed steps (0, every multiple of every·frame_every, the last step)
 *    rather than at the end of whatever calls the driver happens to make: the dashboard's
 *    animation then has evenly spaced frames and the backends' frames can be compared;
 *  - the lazy-escape event, the first snapshot step at which every neuron has left the lazy
 *    ball (lazy_dist_min > 1/√m, Definition 3.1), once per replica. Its resolution is the
 *    snapshot interval `every`: checking every step would cost an extra m×d pass per step.
 */
import type {
  AdvanceOptions,
  AdvanceResult,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
  SnapshotColumns,
} from "./types.ts";
import { stateArray } from "../engine/session_state.ts";
import { concatColumns, resultColumns } from "../engine/snapshot_columns.ts";
import type { LinearPrepared } from "./linear_label_noise_setup.ts";
import { isFrameStep, nextFrameStep } from "../engine/snapshots.ts";

// Frame steps are shared with the driver, which aligns its calls to them.
export { isFrameStep, nextFrameStep } from "../engine/snapshots.ts";

export const LAZY_ESCAPE_PHASE = "lazy_escape";

/** Lazy radius 1/√m, compared in float32 like the metric it is compared with. */
export function lazyRadius(m: number): number {
  return Math.fround(1 / Math.sqrt(m));
}

export function wrapLinearSession(
  inner: KernelSession,
  prep: LinearPrepared,
  spec: RunSpec,
  state?: SessionState,
): KernelSession {
  const escaped = new Uint8Array(prep.replicas);
  const radius = lazyRadius(prep.m);
  let started = false;
  if (state) {
    // Checkpoint: which replicas' lazy escape was reported (docs/checkpoints.md).
    escaped.set(stateArray(state, "lazy_escaped", prep.replicas));
    started = true;
  }

  /** The lazy-escape event of replica r at `step`, with its lazy_dist_min `dist`. */
  function lazyEscape(step: number, r: number, dist: number): RunEvent {
    escaped[r] = 1;
    return {
      type: "phase_change",
      step,
      phase: LAZY_ESCAPE_PHASE,
      replica: r,
      // The text names the global replica, so a shard's merged events read as one run's.
      detail: `replica ${prep.firstReplica + r}: min_i ‖w_i − w_i(0)‖ = ${
        dist.toPrecision(4)
      } > 1/√m = ${radius.toPrecision(4)}`,
    };
  }

  /**
   * Adds `part` to `into`: its snapshots (or, when `columns` collects them, its columns: the
   * inner session's, or its snapshots converted), the lazy escapes they show, its events, and
   * its frames at frame steps.
   */
  function merge(into: AdvanceResult, part: AdvanceResult, columns?: SnapshotColumns[]) {
    into.events.push(...part.events);
    if (columns) {
      const c = resultColumns(part, prep.replicas);
      columns.push(c);
      const R = prep.replicas;
      const dist = c.metrics.lazy_dist_min;
      for (let i = 0; i < c.steps.length; i++) {
        for (let r = 0; r < R; r++) {
          if (escaped[r] || !(dist[i * R + r] > radius)) continue;
          into.events.push(lazyEscape(c.steps[i], r, dist[i * R + r]));
        }
      }
    } else {
      for (const s of part.snapshots) {
        into.snapshots.push(s);
        const dist = s.metrics.lazy_dist_min;
        for (let r = 0; r < prep.replicas; r++) {
          if (escaped[r] || !(dist[r] > radius)) continue;
          into.events.push(lazyEscape(s.step, r, dist[r]));
        }
      }
    }
    for (const f of part.frames) {
      if (isFrameStep(f.step, spec, prep.frameEvery)) into.frames.push(f);
    }
  }

  return {
    backend: inner.backend,
    adapter: inner.adapter,
    get step() {
      return inner.step;
    },
    async advance(target: number, options?: AdvanceOptions): Promise<AdvanceResult> {
      target = Math.min(target, spec.steps);
      const out: AdvanceResult = { snapshots: [], events: [], frames: [] };
      const columns: SnapshotColumns[] | undefined = options?.columns ? [] : undefined;
      if (!started) {
        started = true;
        merge(out, await inner.advance(0, options), columns); // the step-0 snapshot and frame
      }
      while (inner.step < target) {
        const before = inner.step;
        merge(
          out,
          await inner.advance(
            Math.min(target, nextFrameStep(before, spec, prep.frameEvery)),
            options,
          ),
          columns,
        );
        if (inner.step === before) break; // a session that cannot move (defensive)
      }
      if (columns) out.columns = concatColumns(columns, prep.replicas);
      out.events.sort((a, b) => a.step - b.step);
      return out;
    },
    exportState: inner.exportState && (async () => {
      const st = await inner.exportState!();
      if (st) st.arrays.lazy_escaped = escaped.slice();
      return st;
    }),
    dispose() {
      return inner.dispose();
    },
  };
}
