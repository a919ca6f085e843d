/**
 * The WebGPU shape-matters session against the float64 reference session: every algorithm,
 * every metric at every snapshot, events and frames, over a short paper-size horizon
 * (d = 100, n = 40, 3 replicas with their own lr, δ, σ, λ and data, a learning-rate
 * milestone inside the horizon, several advance() calls). Needs a WebGPU adapter (llvmpipe
 * is enough); without one these tests fail and say how to get one.
 *
 * Tolerances. The kernel keeps v in float32 and sums in float32; the reference is float64
 * on the same float32 data and the same Philox draws, so the trajectories differ only by
 * float32 rounding (and, for Gaussian draws, by the GPU's log/cos/sin). On llvmpipe the
 * largest relative metric error over these 200 steps is ≈1e-6 (≈20 float32 epsilons), the
 * largest frame error ≈7e-6. RTOL = 1e-4 leaves ~100× headroom for adapters that contract
 * to FMA or reorder sums, and is still tight enough to catch semantic slips that move v by
 * lr·O(1) once (an off-by-one schedule step, a wrong draw, a missing noise term: ≥1e-3).
 * support_size is a count and must match exactly (no v_k² lies within 1e-4 of 0.01 here).
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import {
  SHAPE_MATTERS_METRICS,
  shapeMatters,
  shapeMattersMetrics,
  shapeMattersStep,
} from "../server/experiments/shape_matters.ts";
import type { AdvanceResult, KernelSession, RunSpec } from "../server/experiments/types.ts";
import { steppedReferenceSession } from "../server/engine/reference.ts";
import { getGpu } from "../server/engine/webgpu/device.ts";
import { webgpuBackend } from "../server/engine/webgpu/backend.ts";
import { onLlvmpipe, runAll } from "./parity_helpers.ts";
import {
  openShapeMattersGpu,
  type ShapeMattersGpuOptions,
} from "../server/engine/webgpu/shape_matters.ts";

const RTOL = 1e-4;
/** Absolute floor for quantities that pass near zero (frame entries v_k²). */
const ATOL = 1e-6;
const STEPS = 200;
/** Calls: step-0 only, to step 110 (not a snapshot step; the milestone 120 falls inside the next call), the end, past the end. */
const TARGETS = [0, 110, STEPS, STEPS + 50];

const CASES: Array<{ algo: string; noise?: string }> = [
  { algo: "gd" },
  { algo: "label-noise", noise: "gaussian" },
  { algo: "label-noise", noise: "rademacher" },
  { algo: "minibatch-noise" },
  { algo: "gaussian" },
  { algo: "langevin" },
];

function specFor(algo: string, noise?: string, extra: Record<string, unknown> = {}): RunSpec {
  return validateRunSpec({
    experiment: "shape-matters",
    replicas: 3,
    steps: STEPS,
    every: 50,
    backend: "webgpu",
    params: {
      algo,
      ...(noise ? { noise } : {}),
      d: 100,
      n: 40,
      lr: [0.005, 0.01, 0.015],
      lr_schedule: [[120, 0.5]],
      // Mini-batch noise at δ ≥ 1 with these rates blows up within ~10 steps.
      delta: algo === "minibatch-noise" ? [0.5, 0.25, 0.3] : [1, 0.5, 1.5],
      sigma: [0.01, 0.1, 0.5],
      lambda: [100, 10, 1000],
      data: "per-replica",
      ...extra,
    },
  });
}

function close(got: number, want: number, what: string) {
  if (Number.isNaN(want)) return assert.ok(Number.isNaN(got), `${what}: ${got}, want NaN`);
  assert.ok(
    Math.abs(got - want) <= RTOL * Math.abs(want) + ATOL,
    `${what}: webgpu ${got} vs reference ${want} (rel ${Math.abs(got - want) / Math.abs(want)})`,
  );
}

/** Same snapshot steps, metrics within tolerance, same events, frames within tolerance. */
function compareCalls(got: AdvanceResult[], want: AdvanceResult[], skipFrameRows: number[] = []) {
  assert.equal(got.length, want.length);
  got.forEach((g, c) => {
    const w = want[c];
    assert.deepEqual(g.snapshots.map((s) => s.step), w.snapshots.map((s) => s.step), `call ${c}`);
    g.snapshots.forEach((s, i) => {
      for (const { name } of SHAPE_MATTERS_METRICS) {
        const a = s.metrics[name], b = w.snapshots[i].metrics[name];
        assert.equal(a.length, b.length);
        for (let r = 0; r < a.length; r++) {
          const what = `call ${c}, step ${s.step}, ${name}[${r}]`;
          if (name === "support_size") {
            assert.ok(Object.is(a[r], b[r]), `${what}: ${a[r]} vs ${b[r]}`);
          } else close(a[r], b[r], what);
        }
      }
      assert.ok(Number.isFinite(s.wallMs) && s.wallMs >= 0, "wallMs is stamped");
    });
    assert.deepEqual(g.events, w.events, `call ${c} events`);
    assert.equal(g.frames.length, 1);
    assert.equal(w.frames.length, 1);
    const [fg, fw] = [g.frames[0], w.frames[0]];
    assert.deepEqual([fg.step, fg.name, fg.width], [fw.step, fw.name, fw.width]);
    assert.equal(fg.values.length, fw.values.length);
    for (let i = 0; i < fg.values.length; i++) {
      if (skipFrameRows.includes(Math.floor(i / fg.width))) continue;
      close(fg.values[i], fw.values[i], `call ${c} frame ${fg.name}[${i}]`);
    }
  });
}

async function parity(spec: RunSpec, options?: ShapeMattersGpuOptions) {
  await getGpu(); // fails with instructions when there is no adapter
  const gpu = options ? await openShapeMattersGpu(spec, options) : await webgpuBackend.open(spec);
  try {
    assert.equal(gpu.backend, "webgpu");
    const ref = shapeMatters.reference(shapeMatters.prepare(spec), spec);
    compareCalls(await runAll(gpu, TARGETS), await runAll(ref, TARGETS));
    assert.equal(gpu.step, STEPS);
  } finally {
    await gpu.dispose();
  }
}

Deno.test("webgpu backend probes an adapter and supports shape-matters", async () => {
  const probe = await webgpuBackend.probe();
  assert.ok(probe.available, `no WebGPU adapter: ${probe.reason}`);
  assert.ok(probe.adapter.length > 0);
  assert.ok(webgpuBackend.supports("shape-matters"));
  assert.ok(!webgpuBackend.supports("no-such-experiment"));
});

for (const { algo, noise } of CASES) {
  Deno.test(`webgpu = reference: ${algo}${noise ? ` (${noise} s)` : ""}`, async () => {
    await parity(specFor(algo, noise));
  });
}

Deno.test("webgpu = reference with v, r, z in storage buffers and 7-step dispatches", async () => {
  // The fallback for sizes beyond workgroup memory, and dispatches that end between
  // snapshots and milestones, on the two algorithms that use the most scratch.
  await parity(specFor("minibatch-noise"), { storageState: true, maxStepsPerDispatch: 7 });
  await parity(specFor("langevin"), { storageState: true, maxStepsPerDispatch: 7 });
});

Deno.test("webgpu = reference with 4 and 256 threads per workgroup", async () => {
  // Fewer threads than examples or coordinates (each thread loops), and more (most idle).
  await parity(specFor("gaussian"), { workgroupSize: 4 });
  await parity(specFor("label-noise"), { workgroupSize: 256 });
});

Deno.test("webgpu = reference with shared data and a steps/every remainder", async () => {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    replicas: 2,
    steps: 130,
    every: 40,
    params: { algo: "label-noise", lr: [0.01, 0.02], lr_schedule: [[0, 0.5], [70, 0.1]] },
  });
  await getGpu();
  const gpu = await webgpuBackend.open(spec);
  try {
    const ref = shapeMatters.reference(shapeMatters.prepare(spec), spec);
    // Snapshots 0, 40, 80, 120 and the final 130, reached by uneven calls.
    compareCalls(await runAll(gpu, [55, 56, 130]), await runAll(ref, [55, 56, 130]));
  } finally {
    gpu.dispose();
  }
});

/**
 * The reference's update with the state stored in float32 after every step, as a kernel
 * stores it. A blow-up overflows float32 (|v| ≈ 1e19 already overflows v²) steps before
 * float64 (|v| ≈ 1e102), so only this oracle pins the kernel's divergence step exactly.
 */
function float32StateReference(spec: RunSpec): KernelSession {
  const prep = shapeMatters.prepare(spec);
  const states = Array.from(
    { length: spec.replicas },
    () => new Float64Array(prep.d).fill(prep.v0),
  );
  return steppedReferenceSession({
    spec,
    metricNames: SHAPE_MATTERS_METRICS.map((m) => m.name),
    stepReplica(r, t) {
      shapeMattersStep(prep, states[r], r, t);
      for (let k = 0; k < prep.d; k++) states[r][k] = Math.fround(states[r][k]);
      return states[r];
    },
    metricsOf: (r) => shapeMattersMetrics(prep, states[r], r),
  });
}

Deno.test("divergence: huge lr on one replica is reported at its step, others unaffected", async () => {
  await getGpu();
  const spec = validateRunSpec({
    experiment: "shape-matters",
    replicas: 3,
    steps: 100,
    every: 25,
    params: { algo: "label-noise", lr: [0.01, 10, 0.02], data: "per-replica" },
  });
  // 3-step dispatches: the divergence lands inside a later dispatch of the first call.
  const gpu = await openShapeMattersGpu(spec, { maxStepsPerDispatch: 3 });
  try {
    const got = await runAll(gpu, [50, 100]);
    const f32 = await runAll(float32StateReference(spec), [50, 100]);
    const f64 = await runAll(shapeMatters.reference(shapeMatters.prepare(spec), spec), [50, 100]);

    const [event] = got[0].events;
    assert.equal(got[0].events.length, 1);
    assert.equal(got[1].events.length, 0, "reported once");
    assert.equal(event.type, "replica_diverged");
    assert.equal((event as { replica: number }).replica, 1);
    assert.deepEqual(got[0].events, f32[0].events, "same step as the float32-state reference");
    // The float64 reference overflows later (see float32StateReference), by a step or two.
    const f64Step = f64[0].events[0]?.step ?? Infinity;
    assert.ok(
      f64Step >= event.step && f64Step <= event.step + 3,
      `float64 reference diverges at ${f64Step}, webgpu at ${event.step}`,
    );

    // Replicas 0 and 2 match the float64 reference; replica 1 reads NaN from then on.
    compareCalls(
      got.map((c) => ({ ...c, events: [] })),
      f64.map((c) => ({ ...c, events: [] })),
      [1],
    );
    for (const call of got) {
      for (const s of call.snapshots) {
        const dead: boolean = s.step >= event.step;
        for (const { name } of SHAPE_MATTERS_METRICS) {
          assert.equal(Number.isNaN(s.metrics[name][1]), dead, `${name}[1] at ${s.step}`);
        }
      }
      // The frozen state is the one that went non-finite.
      const row = call.frames[0].values.subarray(100, 200);
      assert.ok(row.some((x) => !Number.isFinite(x)), "replica 1's frozen state is non-finite");
    }
  } finally {
    gpu.dispose();
  }
});

Deno.test("a 1000-step call with no snapshot inside matches the reference", async () => {
  // One snapshot interval longer than llvmpipe's loop budget allows in one dispatch: the
  // session must split it (see llvmpipeStepLimit) rather than let the driver cut it short.
  const spec = validateRunSpec({
    experiment: "shape-matters",
    replicas: 1,
    steps: 1000,
    every: 1000,
    params: { algo: "label-noise", lr: 0.01 },
  });
  await getGpu();
  const gpu = await webgpuBackend.open(spec);
  try {
    const ref = shapeMatters.reference(shapeMatters.prepare(spec), spec);
    compareCalls(await runAll(gpu, [1000]), await runAll(ref, [1000]));
  } finally {
    gpu.dispose();
  }
});

Deno.test("a dispatch cut short by llvmpipe's loop limit is an error, not wrong numbers", async () => {
  if (!(await onLlvmpipe())) return;
  const spec = validateRunSpec({
    experiment: "shape-matters",
    replicas: 1,
    steps: 2000,
    every: 2000,
    params: { algo: "gd" },
  });
  const gpu = await openShapeMattersGpu(spec, {
    maxStepsPerDispatch: 2000,
    respectLoopLimit: false,
  });
  try {
    await gpu.advance(0);
    await assert.rejects(() => gpu.advance(2000), /cut a shape-matters dispatch short/);
  } finally {
    gpu.dispose();
  }
});

Deno.test("webgpu open() rejects experiments it has no kernels for", async () => {
  const spec = { ...specFor("gd"), experiment: "nope" };
  await assert.rejects(() => webgpuBackend.open(spec), /no kernels for "nope"/);
});
