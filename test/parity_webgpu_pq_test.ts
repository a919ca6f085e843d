/**
 * The WebGPU P/Q sessions (kernels-wgsl/pq_model.wgsl, server/engine/webgpu/pq_model.ts)
 * against the float64 reference, for every algorithm of `large-lr` and `label-noise-anneal`:
 * every metric of every replica at every snapshot and the events (loss-rule anneals, with
 * per-replica learning rates, at the same steps, both mid-run), at a tiny size (llvmpipe is
 * slow): d = 18 (not a multiple of 4: padded rows, noise rows straddling Philox blocks),
 * m = 16 (14 for small-preact-noise: 7 units per block, Ξ ending inside a Philox block),
 * N = 36, n_test = 100, 2 replicas, 60 steps, snapshots every 10, the step-rule anneal and
 * the pattern step at 25 (between snapshots), three advance() calls. Also: 32 threads with
 * 3-step dispatches, a 1000-step call split below llvmpipe's loop limit (loss-rule anneal
 * at check steps 250 and 300), divergence, and a dispatch cut short on purpose. Needs a
 * WebGPU adapter (llvmpipe is enough); without one these tests fail and say how to get one.
 *
 * Tolerances. Data and the initialisation are the same float32 values on both sides and the
 * Philox draws are the same words; the kernel is float32 throughout (WGSL has no f64: the
 * forward pass, the loss, ℓ', the gradient sums, the update, float32 Box–Muller normals),
 * the reference float64; the metrics are evaluated on both sides by the same float64 code
 * (pqMetrics) from the respective weights, so the differences are the weights' float32
 * rounding carried through the updates. Measured on llvmpipe (PQ_VERBOSE=1 prints them): the
 * worst error is 0.043 of its tolerance (g_z_minus, 8.5e-6 of its scale), losses ≤ 0.003,
 * norms and p_alignment ≤ 0.008; error rates, flips, lr and anneal_step agree exactly.
 *  - REL_TOL = 2e-4 of max(|a|, |b|, SCALE[metric]) (the wasm parity test's bound: the same
 *    float32 arithmetic up to summation order): a > 20× margin over the measured worst,
 *    while one update at the wrong learning rate, a missing or halved noise term, an ignored
 *    label flip or Ξ draw each fail these tests (checked by mutating the kernel).
 *  - error rates are counts over ≤ 2·n_test examples: they must agree to 1e-6 (exactly)
 *    unless an output sits within float32 rounding of 0, which these seeds avoid;
 *  - activation_flips counts sign changes of pre-activations against the anneal's pattern:
 *    the kernel computes both signs in float32, the reference in float64, so a pre-activation
 *    within rounding of 0 may count differently: one (example, unit) pair is allowed;
 *  - lr and anneal_step must agree exactly, and the events in (type, step, replica, phase):
 *    a loss-rule event's detail quotes the checked loss, float32 on the device.
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { AdvanceResult, RunEvent, RunSpec } from "../server/experiments/types.ts";
import { getGpu } from "../server/engine/webgpu/device.ts";
import { webgpuBackend } from "../server/engine/webgpu/backend.ts";
import {
  openLabelNoiseGpu,
  openLargeLrGpu,
  type PQGpuOptions,
} from "../server/engine/webgpu/pq_model.ts";
import { generateRunData, patternPairs, pqShape } from "../server/experiments/pq_model.ts";
import { collect, onLlvmpipe } from "./parity_helpers.ts";

const REL_TOL = 2e-4;
/** Metrics near 0 are compared on their natural scale instead (a cosine, a difference). */
const SCALE: Record<string, number> = { p_alignment: 1, q_second_diff: 0.1, g_z: 0.1 };
const STEPS = 60;
const TARGETS = [0, 27, STEPS];
const verbose = Deno.env.get("PQ_VERBOSE") === "1";
/** Worst relative-to-scale error per metric over all cases. */
const worst = new Map<string, number>();

function small(experiment: string, params: Record<string, unknown>): RunSpec {
  return validateRunSpec({
    experiment,
    replicas: 2,
    steps: STEPS,
    every: 10,
    backend: "webgpu",
    params: {
      d: 18,
      kappa_sq: 0.5,
      m: 16,
      n_test: 100,
      r_scale: 10,
      tau0: 0.3,
      anneal_step: 25,
      ...params,
    },
  });
}

function check(name: string, a: number, b: number, pairs: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  if (name === "anneal_step" || name === "lr") return a === b ? 0 : Infinity;
  if (name.includes("error")) return Math.abs(a - b) <= 1e-6 ? 0 : Infinity;
  if (name === "activation_flips") return Math.abs(a - b) * pairs / 1.0001;
  const scale = Math.max(Math.abs(a), Math.abs(b), SCALE[name] ?? 0.01);
  return Math.abs(a - b) / scale / REL_TOL;
}

const eventKey = (e: RunEvent) =>
  JSON.stringify({ ...e, detail: undefined } as Record<string, unknown>);

function openGpu(spec: RunSpec, options?: PQGpuOptions) {
  if (!options) return webgpuBackend.open(spec);
  return spec.experiment === "large-lr"
    ? openLargeLrGpu(spec, options)
    : openLabelNoiseGpu(spec, options);
}

async function assertParity(
  spec: RunSpec,
  options?: PQGpuOptions,
  targets = TARGETS,
  skipReplica = -1,
): Promise<{ want: AdvanceResult; got: AdvanceResult }> {
  await getGpu(); // fails with instructions when there is no adapter
  const exp = getExperiment(spec.experiment);
  const want = await collect(exp.reference(exp.prepare(spec), spec), targets);
  const session = await openGpu(spec, options);
  let got: AdvanceResult;
  try {
    assert.equal(session.backend, "webgpu");
    got = await collect(session, targets);
    assert.equal(session.step, spec.steps);
  } finally {
    await session.dispose();
  }
  const shape = pqShape(spec.params);
  const perReplica = spec.params.data === "per-replica";
  const data = generateRunData(shape, spec.params.seed as number, perReplica ? 2 : 1);
  assert.deepEqual(got.snapshots.map((s) => s.step), want.snapshots.map((s) => s.step));
  want.snapshots.forEach((ws, i) => {
    const gs = got.snapshots[i];
    assert.deepEqual(Object.keys(gs.metrics).sort(), Object.keys(ws.metrics).sort());
    for (const [name, values] of Object.entries(ws.metrics)) {
      // The WGSL kernel keeps no copy of the anneal's weights and has no stopping rule: the
      // *_at_anneal / *_at_stop metrics are NaN there (docs/experiments/large-lr.md).
      if (/_at_(anneal|stop)$/.test(name)) continue;
      // Nor does it track the noise part W̃ of W: the signal/noise split is NaN there.
      if (/^w_(signal|noise)_/.test(name)) {
        assert.ok(Array.from(gs.metrics[name]).every(Number.isNaN), `${name} is NaN on WebGPU`);
        continue;
      }
      values.forEach((w, r) => {
        if (r === skipReplica) return;
        const g = gs.metrics[name][r];
        const ofTol = check(name, w, g, patternPairs(data, shape, perReplica ? r : 0));
        worst.set(name, Math.max(worst.get(name) ?? 0, ofTol));
        assert.ok(ofTol <= 1, `${name}[${r}] at step ${ws.step}: reference ${w}, webgpu ${g}`);
      });
    }
  });
  if (skipReplica < 0) {
    // The reference's notes with the values at the anneal have no WebGPU counterpart (above).
    const keys = (r: AdvanceResult) => r.events.filter((e) => e.type !== "note").map(eventKey);
    assert.deepEqual(keys(got), keys(want), "events");
  }
  if (verbose && want.events.length) {
    console.log(spec.experiment, spec.params.algo, want.events.map((e) => `${e.type}@${e.step}`));
  }
  return { want, got };
}

const LARGE_LR_CASES: [string, Record<string, unknown>][] = [
  // Loss rule: shared data (one threshold q·log 2 + ε1 = 0.366 + ε1), ε1 chosen from the
  // reference's loss curves so that both replicas anneal mid-run, at different steps.
  [
    "large-then-small",
    { eta1: [2, 3], eta2: 0.2, anneal: "loss", epsilon1: 0.285, data: "shared" },
  ],
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step" }],
  ["small", { eta1: 2, eta2: [0.5, 0.3] }],
  // m = 14: 7 units per block, and m normals of Ξ that end inside a Philox block.
  ["small-preact-noise", { eta1: 2, eta2: 0.5, noise_off_step: 33, data: "shared", m: 14 }],
  // Noise pairs (replica 1 is replica 0's noise-free twin) and a block-alone run.
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step", noise_pairs: "on" }],
  ["small", { eta1: 2, eta2: 0.5, blocks: "q" }],
  // The Q plane alone runs the general kernel here: the same Q numbers, the norms NaN.
  ["small", { eta1: 2, eta2: 0.5, blocks: "q-plane" }],
  // Equal block widths other than m: the kernel's one row count is m_p/2 = m_q/2 = 4.
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step", m: 14, m_p: 8, m_q: 8 }],
];

const LABEL_NOISE_CASES: [string, Record<string, unknown>][] = [
  [
    "lnsgd-ls",
    { eta1: 2, eta2: 0.1, anneal: "loss", epsilon1: 0.26, anneal_check_every: 10, data: "shared" },
  ],
  ["lnsgd-ls", { eta1: 1, eta2: 0.1, anneal: "step", delta: [0.1, 0.3] }],
  ["lnsgd-s", { eta2: 0.5, delta: 0.2, data: "shared" }],
  ["fbgd-ls", { eta1: [2, 3], eta2: 0.2, anneal: "loss", epsilon1: 0.22, data: "shared" }],
];

Deno.test("webgpu backend supports large-lr and label-noise-anneal", async () => {
  const probe = await webgpuBackend.probe();
  assert.ok(probe.available, `no WebGPU adapter: ${probe.reason}`);
  assert.ok(webgpuBackend.supports("large-lr"));
  assert.ok(webgpuBackend.supports("label-noise-anneal"));
});

for (
  const [experiment, cases] of [
    ["large-lr", LARGE_LR_CASES],
    ["label-noise-anneal", LABEL_NOISE_CASES],
  ] as const
) {
  for (const [algo, params] of cases) {
    Deno.test(`webgpu = reference: ${experiment} ${algo} ${JSON.stringify(params)}`, async () => {
      const { want } = await assertParity(small(experiment, { algo, ...params }));
      const anneals = want.events.filter((e) => e.type === "phase_change");
      if (params.anneal === "loss") {
        const steps = anneals.map((e) => e.step);
        assert.equal(steps.length, 2, "both replicas anneal by the loss rule");
        assert.ok(steps.every((t) => t > 0 && t < STEPS) && steps[0] !== steps[1], `${steps}`);
      }
      // The anneal (or the pattern step) falls inside the horizon: flips are measured.
      const last = want.snapshots[want.snapshots.length - 1];
      const annealed = [...last.metrics.anneal_step].some((x) => x >= 0);
      assert.ok(annealed || !["lnsgd-ls", "fbgd-ls", "large-then-small"].includes(algo));
      assert.ok(last.metrics.activation_flips.some((x) => x > 0), "flips are measured");
    });
  }
}

Deno.test("webgpu = reference: 32 threads and 3-step dispatches, several per snapshot", async () => {
  const options = { workgroupSize: 32, maxStepsPerDispatch: 3 };
  await assertParity(
    small("large-lr", { ...LARGE_LR_CASES[0][1], algo: "large-then-small" }),
    options,
  );
  await assertParity(
    small("label-noise-anneal", { ...LABEL_NOISE_CASES[0][1], algo: "lnsgd-ls" }),
    options,
  );
  await assertParity(
    small("large-lr", { ...LARGE_LR_CASES[3][1], algo: "small-preact-noise" }),
    options,
  );
});

Deno.test("a 1000-step call with one snapshot is split below llvmpipe's loop limit", async () => {
  // Hundreds of updates per dispatch fit the loop budget at this size: the session must cut
  // the call into several dispatches rather than let the driver cut one short.
  const long = (experiment: string, params: Record<string, unknown>) =>
    validateRunSpec({ ...small(experiment, params), steps: 1000, every: 1000 });
  await assertParity(
    long("large-lr", { algo: "large-then-small", eta1: 1, eta2: 0.2, anneal_step: 400 }),
    undefined,
    [1000],
  );
  await assertParity(
    long("label-noise-anneal", {
      algo: "lnsgd-ls",
      eta1: 1,
      eta2: 0.1,
      anneal: "loss",
      epsilon1: 0.1,
      anneal_check_every: 50,
      data: "shared",
    }),
    undefined,
    [1000],
  );
});

Deno.test("divergence: one replica's decay factor ≪ −1 is reported once, it reads NaN", async () => {
  // λ·η1 ≫ 2 makes 1 − η1λ ≪ −1: replica 1's weights grow geometrically. Float32 overflows
  // long before float64, so the webgpu replica diverges first; replica 0 must still agree.
  const spec = small("large-lr", {
    algo: "large-then-small",
    eta1: [2, 3000],
    eta2: 0.2,
    anneal: "step",
    anneal_step: 1000,
    lambda_scale: 10,
  });
  const { want, got } = await assertParity(spec, { maxStepsPerDispatch: 4 }, TARGETS, 1);
  const diverged = (r: AdvanceResult) =>
    r.events.flatMap((e) => e.type === "replica_diverged" ? [[e.replica, e.step]] : []);
  const [g, w] = [diverged(got), diverged(want)];
  assert.equal(g.length, 1, "reported once");
  assert.equal(g[0][0], 1);
  assert.ok(w.length === 0 || (w[0][0] === 1 && g[0][1] <= w[0][1]), `${g} vs ${w}`);
  for (const s of got.snapshots) {
    assert.equal(Number.isNaN(s.metrics.train_loss[1]), s.step >= g[0][1], `step ${s.step}`);
    assert.ok(Number.isFinite(s.metrics.train_loss[0]));
  }
});

Deno.test("a dispatch cut short by llvmpipe's loop limit is an error, not wrong numbers", async () => {
  if (!(await onLlvmpipe())) return;
  const spec = validateRunSpec({
    ...small("large-lr", { algo: "small", eta2: 0.1 }),
    steps: 3000,
    every: 3000,
  });
  const gpu = await openLargeLrGpu(spec, { maxStepsPerDispatch: 3000, respectLoopLimit: false });
  try {
    await gpu.advance(0);
    await assert.rejects(() => gpu.advance(3000), /cut a large-lr dispatch short/);
  } finally {
    gpu.dispose();
  }
});

Deno.test("summary: worst error per metric, as a fraction of its tolerance", () => {
  if (!verbose) return;
  for (const [name, ofTol] of worst) {
    console.log(`${name.padEnd(22)} ${ofTol.toExponential(2)} of tolerance`);
  }
});
