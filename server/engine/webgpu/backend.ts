/**
 * The WebGPU (WGSL) compute backend. Each experiment with WGSL kernels registers a session
 * factory here by experiment id; `supports` is just membership in that map.
 */
import type { BackendProbe, ComputeBackend } from "../backend.ts";
import type { KernelSession, RunSpec } from "../../experiments/types.ts";
import { probeGpu } from "./device.ts";
import { openShapeMattersGpu } from "./shape_matters.ts";
import { openLinearLabelNoiseGpu } from "./linear_label_noise.ts";
import { openPegrGpu } from "./pegr.ts";
import { openLabelNoiseGpu, openLargeLrGpu } from "./pq_model.ts";
import { refuseUnequalWidths } from "./pq_widths.ts";

export type WebGpuSessionFactory = (spec: RunSpec) => Promise<KernelSession>;

/** Experiment id → session factory. Later experiments add their entry here. */
export const WEBGPU_SESSIONS: Record<string, WebGpuSessionFactory> = {
  "shape-matters": (spec) => openShapeMattersGpu(spec),
  "linear-label-noise": (spec) => openLinearLabelNoiseGpu(spec),
  pegr: (spec) => openPegrGpu(spec),
  "large-lr": (spec) => (refuseUnequalWidths(spec), openLargeLrGpu(spec)),
  "label-noise-anneal": (spec) => (refuseUnequalWidths(spec), openLabelNoiseGpu(spec)),
};

export const webgpuBackend: ComputeBackend = {
  name: "webgpu",
  probe(): Promise<BackendProbe> {
    return probeGpu();
  },
  supports(experiment: string): boolean {
    return Object.hasOwn(WEBGPU_SESSIONS, experiment);
  },
  // The WebGPU sessions do not read their state back yet: their checkpoints are replay states.
  restores: () => false,
  open(spec: RunSpec): Promise<KernelSession> {
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
    return factory(spec);
  },
};
