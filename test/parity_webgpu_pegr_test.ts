/**
 * The WebGPU PEGR session against the float64 reference session: every algorithm (GD, PEGR,
 * FGR in both conventions, λ fixed and λ = 1/(σ_p√d)), every metric at every snapshot, the
 * events, over a short horizon at a small size (llvmpipe is slow): d = 40, m = 4, n = 8,
 * n_test = 200, 3 replicas with their own σ_p, σ0, lr, λ and data, 60 steps, snapshots every
 * 10, the switch-off at step 33 (between snapshots), several advance() calls. Also: the
 * workgroup-memory and storage scratch paths, small workgroups and short dispatches,
 * divergence, llvmpipe's loop limit. Needs a WebGPU adapter (llvmpipe is enough); without one
 * these tests fail and say how to get one.
 *
 * Tolerances. The kernel is float32 throughout (WGSL has no f64): the weights, the inner
 * products, the closed-form coefficients, the metrics. The reference is float64 on the same
 * float32 data (its W0 = σ0·G0 is exact, the kernel's is rounded to float32). The horizon and
 * the per-replica lr and λ are chosen so that the dynamics move the metrics by O(1) (noise
 * memorised by GD, suppressed by PEGR with λ‖ξ‖²/m ≈ 1.2–2.3) without driving the noise to the
 * rounding floor, where float32 and float64 part ways (docs/experiments/pegr.md, precision):
 * the differences are then float32 rounding. Measured on llvmpipe over every case, metric and
 * snapshot (PEGR_VERBOSE=1 prints them): relative ≤ 7e-6 for every metric but rho_bar_max
 * (2.7e-5 on small values), absolute ≤ 1.5e-6; the worst |Δ|/tolerance is 0.027.
 *  - RTOL = 1e-4 relative: ~15–100× the measured relative errors, headroom for adapters that
 *    contract to FMA, reorder sums or round exp differently; every semantic slip guarded here
 *    moves some metric by ≫ 1e-2 (asserted: the regularised runs differ from GD, the two FGR
 *    conventions, and theory vs fixed λ, by > 100·RTOL; an off-by-one switch-off, the paper's
 *    1/m² cross term and a wrong FGR factor each fail these tests).
 *  - ATOL_COEF = 1e-6 absolute for inner products and signal–noise coefficients (signal,
 *    noise, γ, ρ), which can sit at or near 0: ρ̄ is a max over coefficients that are exactly 0
 *    in exact arithmetic (filters never active on ξ_i), where the float32 Gram solve leaks
 *    ~2e-8 from the O(0.1) others, and each update re-rounds the weights (|w| ≲ 0.1, ~1e-8 per
 *    step in <w, ξ_i>), which a contracting (suppressed) direction accumulates to ~3e-7.
 *  - ATOL = 1e-9 for the others (losses, gradient norms, the penalty: ≳ 1e-6 when not exactly
 *    0 here, so the relative bound governs).
 *  - test_accuracy counts test points with y·f > 0; a margin within rounding of 0 could flip
 *    one point, so it may differ by 1/n_test (measured: 0).
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import { PEGR_METRICS } from "../server/experiments/pegr.ts";
import type { AdvanceResult, RunSpec } from "../server/experiments/types.ts";
import { getGpu } from "../server/engine/webgpu/device.ts";
import { webgpuBackend } from "../server/engine/webgpu/backend.ts";
import { onLlvmpipe, runAll } from "./parity_helpers.ts";
import { openPegrGpu, type PegrGpuOptions } from "../server/engine/webgpu/pegr.ts";

const experiment = getExperiment("pegr");
const RTOL = 1e-4;
const ATOL = 1e-9;
const ATOL_COEF = 1e-6;
const N_TEST = 200;
const STEPS = 60;
const PEGR_OFF = 33;
/** Calls: step-0 only, to 25 (not a snapshot step; the switch-off falls in the next call), the end, past it. */
const TARGETS = [0, 25, STEPS, STEPS + 20];
const verbose = Deno.env.get("PEGR_VERBOSE") === "1";
/** Metrics that are inner products or signal–noise coefficients (absolute floor ATOL_COEF). */
const COEFFICIENTS = new Set(["signal", "noise", "gamma_max", "rho_bar_max", "rho_under_min"]);
/** Worst |Δ|, relative |Δ| (where |reference| > 1e-6) and |Δ|/tolerance per metric. */
const worstByMetric = new Map<string, [number, number, number]>();

interface Case {
  name: string;
  params: Record<string, unknown>;
}

const CASES: Case[] = [
  { name: "gd", params: { algo: "gd" } },
  { name: "pegr, λ fixed", params: { algo: "pegr" } },
  { name: "pegr, λ theory", params: { algo: "pegr", lambda_mode: "theory" } },
  { name: "fgr experiments, λ fixed", params: { algo: "fgr" } },
  { name: "fgr section5, λ fixed", params: { algo: "fgr", fgr_convention: "section5" } },
  { name: "fgr experiments, λ theory", params: { algo: "fgr", lambda_mode: "theory" } },
];

function specFor(params: Record<string, unknown>, extra: Record<string, unknown> = {}): RunSpec {
  return validateRunSpec({
    experiment: "pegr",
    replicas: 3,
    steps: STEPS,
    every: 10,
    backend: "webgpu",
    params: {
      d: 40,
      m: 4,
      n: 8,
      n_test: N_TEST,
      sigma_p: [0.5, 1, 1.5],
      sigma0: [0.01, 0.01, 0.001],
      lr: [0.2, 0.1, 0.02],
      lambda: [0.5, 0.2, 0.1],
      pegr_off: PEGR_OFF,
      data: "per-replica",
      seed: 7,
      ...params,
    },
    ...extra,
  });
}

function reference(spec: RunSpec, targets = TARGETS): Promise<AdvanceResult[]> {
  return runAll(experiment.reference(experiment.prepare(spec), spec), targets);
}

/** Largest relative difference of two runs' metrics (values above 1e-3 in size). */
function maxRelDiff(a: AdvanceResult[], b: AdvanceResult[]): number {
  let worst = 0;
  a.forEach((call, c) => {
    call.snapshots.forEach((s, i) => {
      for (const [name, values] of Object.entries(s.metrics)) {
        const other = b[c].snapshots[i].metrics[name];
        values.forEach((x, r) => {
          const y = other[r];
          if (Math.abs(y) > 1e-3) worst = Math.max(worst, Math.abs(x - y) / Math.abs(y));
        });
      }
    });
  });
  return worst;
}

/** Same calls, snapshot steps and events; metrics within tolerance. Returns the worst error. */
function compareCalls(got: AdvanceResult[], want: AdvanceResult[], skipReplicas: number[] = []) {
  assert.equal(got.length, want.length);
  let worstRel = 0, worstAbs = 0;
  got.forEach((g, c) => {
    const w = want[c];
    assert.deepEqual(g.snapshots.map((s) => s.step), w.snapshots.map((s) => s.step), `call ${c}`);
    assert.deepEqual(g.events, w.events, `call ${c} events`);
    assert.deepEqual(g.frames, [], "pegr has no frames");
    g.snapshots.forEach((s, i) => {
      assert.ok(Number.isFinite(s.wallMs) && s.wallMs >= 0, "wallMs is stamped");
      for (const { name } of PEGR_METRICS) {
        const a = s.metrics[name], b = w.snapshots[i].metrics[name];
        assert.equal(a.length, b.length);
        for (let r = 0; r < a.length; r++) {
          if (skipReplicas.includes(r)) continue;
          const what = `call ${c}, step ${s.step}, ${name}[${r}]`;
          const [x, y] = [a[r], b[r]];
          if (Number.isNaN(y)) {
            assert.ok(Number.isNaN(x), `${what}: ${x}, want NaN`);
            continue;
          }
          const err = Math.abs(x - y);
          const tol = name === "test_accuracy"
            ? 1 / N_TEST + 1e-7
            : RTOL * Math.abs(y) + (COEFFICIENTS.has(name) ? ATOL_COEF : ATOL);
          assert.ok(err <= tol, `${what}: webgpu ${x} vs reference ${y} (|Δ| ${err})`);
          const rel = Math.abs(y) > 1e-6 ? err / Math.abs(y) : 0;
          const [wa, wr, wt] = worstByMetric.get(name) ?? [0, 0, 0];
          worstByMetric.set(name, [Math.max(wa, err), Math.max(wr, rel), Math.max(wt, err / tol)]);
          if (name === "test_accuracy") continue;
          worstAbs = Math.max(worstAbs, err);
          if (Math.abs(y) > 1e-6) worstRel = Math.max(worstRel, err / Math.abs(y));
        }
      }
    });
  });
  return { worstRel, worstAbs };
}

async function parity(spec: RunSpec, options?: PegrGpuOptions, label = "") {
  await getGpu(); // fails with instructions when there is no adapter
  const gpu = options ? await openPegrGpu(spec, options) : await webgpuBackend.open(spec);
  try {
    assert.equal(gpu.backend, "webgpu");
    const got = await runAll(gpu, TARGETS);
    const want = await reference(spec);
    const { worstRel, worstAbs } = compareCalls(got, want);
    assert.equal(gpu.step, STEPS);
    if (verbose) {
      console.log(
        `${label}: worst relative ${worstRel.toExponential(2)}, absolute ${
          worstAbs.toExponential(2)
        }`,
      );
    }
    return { got, want };
  } finally {
    await gpu.dispose();
  }
}

Deno.test("webgpu backend probes an adapter and supports pegr", async () => {
  const probe = await webgpuBackend.probe();
  assert.ok(probe.available, `no WebGPU adapter: ${probe.reason}`);
  assert.ok(webgpuBackend.supports("pegr"));
});

for (const { name, params } of CASES) {
  Deno.test(`webgpu pegr = reference: ${name}`, async () => {
    const spec = specFor(params);
    const { got } = await parity(spec, undefined, name);
    // The regulariser metric is on before the switch-off and 0 from it on (λ = 0 for gd).
    for (const call of got) {
      for (const s of call.snapshots) {
        for (const x of s.metrics.regulariser) {
          if (params.algo === "gd" || s.step >= PEGR_OFF) assert.equal(x, 0, `step ${s.step}`);
          else assert.ok(x > 0, `regulariser at step ${s.step}: ${x}`);
        }
      }
    }
  });
}

Deno.test("the parity cases are sensitive: each regulariser moves metrics by ≫ RTOL", async () => {
  const runs = new Map<string, AdvanceResult[]>();
  for (const { name, params } of CASES) runs.set(name, await reference(specFor(params)));
  const gd = runs.get("gd")!;
  const pairs: Array<[string, string]> = [
    ["pegr, λ fixed", "gd"],
    ["pegr, λ theory", "pegr, λ fixed"],
    ["fgr experiments, λ fixed", "gd"],
    ["fgr section5, λ fixed", "fgr experiments, λ fixed"],
    ["fgr experiments, λ theory", "fgr experiments, λ fixed"],
    ["fgr experiments, λ fixed", "pegr, λ fixed"],
  ];
  for (const [a, b] of pairs) {
    const diff = maxRelDiff(runs.get(a)!, runs.get(b) ?? gd);
    if (verbose) console.log(`${a} vs ${b}: ${diff.toExponential(2)}`);
    assert.ok(diff > 100 * RTOL, `${a} vs ${b} differ by only ${diff}`);
  }
});

Deno.test("webgpu pegr = reference: workgroup and storage scratch, 32 threads, 7-step dispatches", async () => {
  // Both scratch placements (llvmpipe defaults to storage, GPUs to workgroup memory), fewer
  // threads than inner products (each thread loops), dispatches ending between snapshots.
  for (const scratchInWorkgroup of [true, false]) {
    const options = { scratchInWorkgroup, workgroupSize: 32, maxStepsPerDispatch: 7 };
    await parity(specFor({ algo: "fgr" }), options, `fgr ${JSON.stringify(options)}`);
    await parity(specFor({ algo: "pegr" }), options, `pegr ${JSON.stringify(options)}`);
  }
});

Deno.test("webgpu pegr = reference with shared data, d = 41, an uneven last interval and calls", async () => {
  // d = 41: rows padded to 44 with zeros (the kernel works on vec4s).
  const spec = specFor({ algo: "pegr", data: "shared", lambda: 0.3, d: 41 }, {
    steps: 47,
    every: 20,
  });
  await getGpu();
  const gpu = await webgpuBackend.open(spec);
  try {
    const targets = [1, 19, 20, 21, 47];
    const got = await runAll(gpu, targets);
    compareCalls(got, await reference(spec, targets));
    assert.deepEqual(got.flatMap((c) => c.snapshots.map((s) => s.step)), [0, 20, 40, 47]);
  } finally {
    gpu.dispose();
  }
});

Deno.test("a 1500-step call with no snapshot inside matches the reference", async () => {
  // One snapshot interval longer than llvmpipe's loop budget allows in one dispatch at this
  // size (≈960 GD steps): the session must split it rather than let the driver cut it short.
  const spec = specFor({ algo: "gd", lr: [0.02, 0.05, 0.1] }, { steps: 1500, every: 1500 });
  await getGpu();
  const gpu = await webgpuBackend.open(spec);
  try {
    const got = await runAll(gpu, [1500]);
    const { worstRel } = compareCalls(got, await reference(spec, [1500]));
    if (verbose) console.log(`1500 steps: worst relative ${worstRel.toExponential(2)}`);
  } finally {
    gpu.dispose();
  }
});

Deno.test("divergence: a huge lr on one replica is reported once, that replica reads NaN", async () => {
  // lr = 50 multiplies the active noise inner products by ~100 per step until the ReLU²
  // outputs overflow; float32 overflows (3e38) long before float64 (1e308), so the webgpu
  // replica diverges earlier than the reference's, never later.
  const spec = specFor(
    { algo: "pegr", lr: [0.2, 50, 0.02], sigma0: [0.01, 1, 0.001] },
    { steps: 60, every: 10 },
  );
  await getGpu();
  const gpu = await openPegrGpu(spec, { maxStepsPerDispatch: 3 });
  try {
    const targets = [25, 60];
    const got = await runAll(gpu, targets);
    const want = await reference(spec, targets);
    const diverged = (r: AdvanceResult[]) =>
      r.flatMap((c) => c.events).flatMap((e) =>
        e.type === "replica_diverged" ? [[e.replica, e.step]] : []
      );
    const [g, w] = [diverged(got), diverged(want)];
    if (verbose) console.log("divergence (replica, step): webgpu", g, "reference", w);
    assert.equal(g.length, 1, "reported once");
    assert.equal(g[0][0], 1);
    assert.ok(
      w.length <= 1 && (w[0]?.[0] ?? 1) === 1,
      "the reference diverges on replica 1 or never",
    );
    const refAt = w[0]?.[1] ?? Infinity;
    assert.ok(g[0][1] <= refAt, `webgpu diverges at ${g[0][1]}, reference at ${refAt}`);
    // At the webgpu divergence the reference's noise inner products are past √(3.4e38): their
    // ReLU² overflows float32, so float32 weights must go non-finite there.
    const after = want.flatMap((c) => c.snapshots).find((s) => s.step >= g[0][1])!;
    assert.ok(!(after.metrics.noise[1] < 1.9e19), `reference noise ${after.metrics.noise[1]}`);
    for (const call of got) {
      for (const s of call.snapshots) {
        for (const { name } of PEGR_METRICS) {
          assert.equal(
            Number.isNaN(s.metrics[name][1]),
            s.step >= g[0][1],
            `${name}[1] at ${s.step}`,
          );
        }
      }
    }
    // Replicas 0 and 2 are unaffected.
    compareCalls(
      got.map((c) => ({ ...c, events: [] })),
      want.map((c) => ({ ...c, events: [] })),
      [1],
    );
  } finally {
    gpu.dispose();
  }
});

Deno.test("a dispatch cut short by llvmpipe's loop limit is an error, not wrong numbers", async () => {
  if (!(await onLlvmpipe())) return;
  const spec = specFor({ algo: "gd" }, { steps: 3000, every: 3000 });
  const gpu = await openPegrGpu(spec, { maxStepsPerDispatch: 3000, respectLoopLimit: false });
  try {
    await gpu.advance(0);
    await assert.rejects(() => gpu.advance(3000), /cut a pegr dispatch short/);
  } finally {
    gpu.dispose();
  }
});

Deno.test("summary: worst differences per metric (PEGR_VERBOSE=1 prints them)", () => {
  if (!verbose) return;
  for (const [name, [abs, rel, ofTol]] of worstByMetric) {
    const f = (x: number) => x.toExponential(2);
    console.log(`${name.padEnd(22)} |Δ| ${f(abs)}  relative ${f(rel)}  of tolerance ${f(ofTol)}`);
  }
});
