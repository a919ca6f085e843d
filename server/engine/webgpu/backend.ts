/**
 * The WebGPU (WGSL) compute backend. Each experiment with WGSL kernels registers a session
 * factory here by experiment id; `supports` is just membership in that map.
 */
import type { BackendProbe, ComputeBackend } from "../backend.ts";
import type { KernelSession, RunSpec, SessionState } from "../../experiments/types.ts";
import { probeGpu } from "./device.ts";
import { openShapeMattersGpu } from "./shape_matters.ts";
import { openLinearLabelNoiseGpu } from "./linear_label_noise.ts";
import { openPegrGpu } from "./pegr.ts";
import { openLabelNoiseGpu, openLargeLrGpu } from "./pq_model.ts";
import { refuseQRays, refuseUnequalWidths } from "./pq_widths.ts";

/** Opens a session at step 0, or continuing from a checkpoint (docs/checkpoints.md). */
export type WebGpuSessionFactory = (spec: RunSpec, state?: SessionState) => Promise<KernelSession>;

/** Experiment id → session factory. Later experiments add their entry here. */
export const WEBGPU_SESSIONS: Record<string, WebGpuSessionFactory> = {
  "shape-matters": (spec, state) => openShapeMattersGpu(spec, {}, state),
  "linear-label-noise": (spec, state) => openLinearLabelNoiseGpu(spec, {}, state),
  pegr: (spec, state) => openPegrGpu(spec, {}, state),
  "large-lr": (spec, state) => (
    refuseQRays(spec), refuseUnequalWidths(spec), openLargeLrGpu(spec, {}, state)
  ),
  "label-noise-anneal": (spec, state) => (
    refuseQRays(spec), refuseUnequalWidths(spec), openLabelNoiseGpu(spec, {}, state)
  ),
};

export const webgpuBackend: ComputeBackend = {
  name: "webgpu",
  probe(): Promise<BackendProbe> {
    return probeGpu();
  },
  supports(experiment: string): boolean {
    return Object.hasOwn(WEBGPU_SESSIONS, experiment);
  },
  // Every WebGPU session reads its state back and opens from a state (docs/checkpoints.md).
  restores(experiment: string): boolean {
    return Object.hasOwn(WEBGPU_SESSIONS, experiment);
  },
  open(spec: RunSpec, state?: SessionState): Promise<KernelSession> {
    const factory = Object.hasOwn(WEBGPU_SESSIONS, spec.experiment)
      ? WEBGPU_SESSIONS[spec.experiment]
      : undefined;
    if (!factory) {
      return Promise.reject(
        new Error(
          `the webgpu backend has no kernels for ${JSON.stringify(spec.experiment)}; it has: ${
            Object.keys(WEBGPU_SESSIONS).join(", ")
          }`,
        ),
      );
    }
    return factory(spec, state);
  },
};
