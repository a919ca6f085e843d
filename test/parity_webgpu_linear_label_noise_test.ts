/**
 * The WebGPU `linear-label-noise` session against the float64 reference session: every
 * algorithm and option, every metric at every snapshot, the per-neuron frames and the
 * events, over a short horizon with several advance() calls. Needs a WebGPU adapter
 * (llvmpipe is enough); without one these tests fail and say how to get one.
 *
 * Tolerances. The kernel keeps W, a, S in float32 and reduces in float32 (tree sums, in a
 * different order from the reference); the reference is float64 on the same float32 data
 * and the same Philox draws. On llvmpipe over these 200 steps the largest relative metric
 * difference is ~1e-6, except where a metric tends to 0 (absolute floors below, as in the
 * wasm parity test). REL_TOL = 1e-4 leaves ~100× headroom for adapters that contract to FMA
 * or reorder sums and still catches a draw one step off or a missing term (≥ 1e-3).
 * balance_residual: < 1e-12 in float64; on the GPU it is computed in float32 from a float32
 * state (‖w‖² − a² − c − S with c rounded to float32), measured ≤ 2e-6 here, bound 5e-5.
 */
import assert from "node:assert/strict";
import { getExperiment } from "../server/experiments/registry.ts";
import type { AdvanceResult, RunSpec } from "../server/experiments/types.ts";
import { webgpuBackend } from "../server/engine/webgpu/backend.ts";
import { HOW_TO_GET_AN_ADAPTER } from "../server/engine/webgpu/device.ts";
import { openLinearLabelNoiseGpu } from "../server/engine/webgpu/linear_label_noise.ts";
import {
  assertSameEvents,
  assertSnapshotsMatch,
  collectAndDispose as collect,
  onLlvmpipe,
  relClose,
} from "./parity_helpers.ts";
import { linearParitySpec, metricClose, REL_TOL } from "./linear_label_noise_parity.ts";

const experiment = getExperiment("linear-label-noise");
const STEPS = 200;

async function requireAdapter() {
  const probe = await webgpuBackend.probe();
  assert.ok(probe.available, `no WebGPU adapter: ${probe.reason}. ${HOW_TO_GET_AN_ADAPTER}`);
}

function spec(params: Record<string, unknown>, extra: Record<string, unknown> = {}): RunSpec {
  return linearParitySpec("webgpu", STEPS, params, extra);
}

function assertMatch(want: AdvanceResult, got: AdvanceResult, what: string) {
  assertSnapshotsMatch(want, got, what, metricClose);
  assert.deepEqual(got.frames.map((f) => f.step), want.frames.map((f) => f.step), `${what} frames`);
  want.frames.forEach((wf, i) => {
    wf.values.forEach((w, j) => {
      // Frame entries get an absolute floor of 2e-6 (values near 0 in float32).
      assert.ok(relClose(w, got.frames[i].values[j], REL_TOL, 2e-6), `${what}: frame entry ${j}`);
    });
  });
  assertSameEvents(want, got, what);
}

const CASES: Record<string, unknown>[] = [
  { algo: "label-noise-sgd" },
  { algo: "label-noise-sgd", data_mode: "online", noise: "gaussian" },
  { algo: "sgd" },
  { algo: "gd" },
  { algo: "gd", data_mode: "online" },
  { algo: "oscillation" },
  { algo: "oscillation", data_mode: "online", init: "per-replica" },
  { algo: "periodic", period: 70 },
  { algo: "label-noise-sgd", switch_to_gd_at: 120, data: "per-replica" },
  { algo: "periodic", period: 40, switch_to_gd_at: 130, data_mode: "online" },
];

Deno.test("webgpu backend has an adapter and supports linear-label-noise", async () => {
  await requireAdapter();
  assert.ok(webgpuBackend.supports("linear-label-noise"));
});

for (const params of CASES) {
  Deno.test(`webgpu = reference: ${JSON.stringify(params)}`, async () => {
    await requireAdapter();
    const s = spec(params);
    const want = await collect(experiment.reference(experiment.prepare(s), s), [STEPS]);
    const got = await collect(await webgpuBackend.open(s), [0, 73, STEPS, STEPS + 9]);
    assertMatch(want, got, JSON.stringify(params));
  });
}

Deno.test("webgpu = reference with 7-step dispatches and 32 threads (4 neurons each)", async () => {
  await requireAdapter();
  const s = spec({ algo: "periodic", period: 30, m: 101 });
  const want = await collect(experiment.reference(experiment.prepare(s), s), [STEPS]);
  const gpu = await openLinearLabelNoiseGpu(s, { maxStepsPerDispatch: 7, workgroupSize: 32 });
  assertMatch(want, await collect(gpu, [STEPS]), "7-step dispatches");
});

Deno.test("divergence: a huge learning rate is reported and frozen; others go on", async () => {
  await requireAdapter();
  const s = spec({ lr: [0.01, 5, 0.005], frame_every: 0 });
  const got = await collect(await webgpuBackend.open(s), [STEPS]);
  const diverged = got.events.filter((e) => e.type === "replica_diverged");
  assert.deepEqual(diverged.map((e) => (e as { replica: number }).replica), [1]);
  for (const snap of got.snapshots) {
    assert.equal(Number.isNaN(snap.metrics.w_norm_mean[1]), snap.step >= diverged[0].step);
    assert.ok(Number.isFinite(snap.metrics.w_norm_mean[0]));
  }
});

Deno.test("a dispatch cut short by llvmpipe's loop limit is an error, not wrong numbers", async () => {
  if (!(await onLlvmpipe())) return;
  // ~60 counted iterations per step (fewer in fact: LLVM unrolls the constant-length inner
  // loops): 3000 steps still fit, 20000 are cut (measured); 30000 certainly are.
  const s = spec({ frame_every: 0 }, { steps: 30000, every: 30000 });
  const session = await openLinearLabelNoiseGpu(s, {
    maxStepsPerDispatch: 30000,
    respectLoopLimit: false,
  });
  try {
    await session.advance(0);
    await assert.rejects(() => session.advance(30000), /cut a linear-label-noise dispatch short/);
  } finally {
    await session.dispose();
  }
});
