/**
 * Experiment `linear-label-noise`: two-layer linear networks f(x) = aᵀWx under label-noise SGD
 * (seed-002). The pieces: linear_label_noise_setup.ts (schema, random-draw protocol, data),
 * linear_label_noise_reference.ts (float64 updates and metrics, the test oracle),
 * linear_label_noise_session.ts (frames and the lazy-escape event, shared by all backends).
 * Docs: docs/experiments/linear-label-noise.md.
 */
import type { ExperimentDefinition } from "./types.ts";
import {
  linearLabelNoiseParams,
  type LinearPrepared,
  NEURON_FRAME,
  plannedLinearEvents,
  prepareLinearLabelNoise,
} from "./linear_label_noise_setup.ts";
import { LINEAR_METRICS, linearReferenceSession } from "./linear_label_noise_reference.ts";

export const linearLabelNoise: ExperimentDefinition<LinearPrepared> = {
  id: "linear-label-noise",
  title: "Two-layer linear networks under label-noise SGD: from lazy to rich",
  paper:
    "Zhang, Zhou, Wang, Han, Huang, Suzuki, Yan. On the Learning Dynamics of Two-layer Linear Networks with Label Noise SGD. HiLD @ ICML 2025 (arXiv 2603.10397)",
  notes: "seed-002-two-layer-linear-label-noise.md",
  params: linearLabelNoiseParams,
  metrics: LINEAR_METRICS,
  frames: [{
    name: NEURON_FRAME,
    doc:
      "per neuron, one row per replica, three planar blocks of m: [‖w_i‖ | <w_i, θ*> | a_i] (Fig. 1c and bottom); every frame_every snapshots, and at step 0 and the last step",
    everySnapshots: 10,
    projectedFloats(spec) {
      const every = spec.params.frame_every as number;
      if (!every) return 0;
      const snapshots = Math.floor(spec.steps / spec.every) + 1;
      return (Math.floor(snapshots / every) + 2) * spec.replicas * 3 * (spec.params.m as number);
    },
  }],
  frameEvery: (spec) => spec.params.frame_every as number,
  defaults: { steps: 2_000_000, every: 2000, replicas: 2 },
  prepare: prepareLinearLabelNoise,
  reference: linearReferenceSession,
  estimateBytes(spec) {
    const p = spec.params;
    const m = p.m as number, d = p.d as number, R = spec.replicas;
    const n = p.data_mode === "online" ? 0 : p.n as number, nTest = p.n_test as number;
    const dataSets = p.data === "per-replica" ? R : 1;
    const initSets = p.init === "per-replica" ? R : 1;
    const perReplica = m * d + 4 * m + 3 * m + LINEAR_METRICS.length * 64; // state, frame, metrics
    const data = dataSets * ((n + nTest) * (d + 1) + d);
    return 4 * (R * perReplica + initSets * m * d + data);
  },
  plannedEvents: plannedLinearEvents,
};
