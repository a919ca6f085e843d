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
import type { AdvanceResult, KernelSession, RunEvent, RunSpec } from "./types.ts";
import type { LinearPrepared } from "./linear_label_noise_setup.ts";

export const LAZY_ESCAPE_PHASE = "lazy_escape";

/** Steps at which a frame is due. */
export function isFrameStep(step: number, spec: RunSpec, frameEvery: number): boolean {
  if (frameEvery <= 0) return false;
  return step === 0 || step === spec.steps || step % (spec.every * frameEvery) === 0;
}

/** The first frame step strictly after `step` (the last step if none comes before it). */
export function nextFrameStep(step: number, spec: RunSpec, frameEvery: number): number {
  if (frameEvery <= 0) return spec.steps;
  const span = spec.every * frameEvery;
  return Math.min(spec.steps, (Math.floor(step / span) + 1) * span);
}

/** Lazy radius 1/√m, compared in float32 like the metric it is compared with. */
export function lazyRadius(m: number): number {
  return Math.fround(1 / Math.sqrt(m));
}

export function wrapLinearSession(
  inner: KernelSession,
  prep: LinearPrepared,
  spec: RunSpec,
): KernelSession {
  const escaped = new Uint8Array(prep.replicas);
  const radius = lazyRadius(prep.m);
  let started = false;

  function merge(into: AdvanceResult, part: AdvanceResult) {
    into.events.push(...part.events);
    for (const s of part.snapshots) {
      into.snapshots.push(s);
      const dist = s.metrics.lazy_dist_min;
      for (let r = 0; r < prep.replicas; r++) {
        if (escaped[r] || !(dist[r] > radius)) continue;
        escaped[r] = 1;
        const event: RunEvent = {
          type: "phase_change",
          step: s.step,
          phase: LAZY_ESCAPE_PHASE,
          replica: r,
          detail: `replica ${r}: min_i ‖w_i − w_i(0)‖ = ${dist[r].toPrecision(4)} > 1/√m = ${
            radius.toPrecision(4)
          }`,
        };
        into.events.push(event);
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
    async advance(target: number): Promise<AdvanceResult> {
      target = Math.min(target, spec.steps);
      const out: AdvanceResult = { snapshots: [], events: [], frames: [] };
      if (!started) {
        started = true;
        merge(out, await inner.advance(0)); // the step-0 snapshot and frame
      }
      while (inner.step < target) {
        const before = inner.step;
        merge(
          out,
          await inner.advance(Math.min(target, nextFrameStep(before, spec, prep.frameEvery))),
        );
        if (inner.step === before) break; // a session that cannot move (defensive)
      }
      out.events.sort((a, b) => a.step - b.step);
      return out;
    },
    dispose() {
      return inner.dispose();
    },
  };
}
