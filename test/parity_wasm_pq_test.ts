/**
 * The wasm P/Q kernel (kernels-as/pq_model.ts) against the float64 reference, for every
 * algorithm of `large-lr` and `label-noise-anneal`: every metric at every snapshot, the
 * anneal events (loss rule, with per-replica thresholds), and divergence. Data and the
 * initialisation are the same float32 values on both sides and the Philox draws are
 * identical, so the only differences are float32 rounding (and float32 Box–Muller normals).
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { AdvanceResult, KernelSession, RunSpec } from "../server/experiments/types.ts";
import { testEachWasmBuild, wasmBackend } from "./wasm_builds.ts";

await ensureWasm();

/**
 * Tolerance, relative to max(|a|, |b|, SCALE[metric]). Over 150–400 steps the measured worst
 * differences are ~1e-5 relative (g_z and q_second_diff, which are differences of O(1)
 * sums); 2e-4 leaves a 20× margin, while one step at the wrong learning rate, a missing
 * noise term or a wrong draw moves these metrics by 1e-2 or more. Error rates are counts
 * over ≤ 2·n_test examples and must agree exactly unless an output sits within float32
 * rounding of 0, which these fixed seeds avoid. anneal_step and lr must agree exactly.
 */
const REL_TOL = 2e-4;
/** Metrics near 0 are compared on their natural scale instead (a cosine, a difference). */
const SCALE: Record<string, number> = { p_alignment: 1, q_second_diff: 0.1, g_z: 0.1 };

function close(name: string, a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (name.includes("error") || name === "anneal_step" || name === "lr") {
    return name.includes("error") ? Math.abs(a - b) <= 1e-6 : a === b;
  }
  const scale = Math.max(Math.abs(a), Math.abs(b), SCALE[name] ?? 0.01);
  return Math.abs(a - b) <= REL_TOL * scale;
}

async function collect(session: KernelSession, targets: number[]): Promise<AdvanceResult> {
  const all: AdvanceResult = { snapshots: [], events: [], frames: [] };
  for (const target of targets) {
    const r = await session.advance(target);
    all.snapshots.push(...r.snapshots);
    all.events.push(...r.events);
  }
  return all;
}

function small(experiment: string, params: Record<string, unknown>, steps: number): RunSpec {
  return validateRunSpec({
    experiment,
    replicas: 2,
    steps,
    every: Math.max(1, Math.floor(steps / 4)),
    backend: "wasm",
    params: {
      d: 18, // not a multiple of 4: exercises the padded rows
      kappa_sq: 0.25,
      m: 14, // odd number of rows per block: exercises the 4-row remainder
      n_test: 100,
      r_scale: 10,
      tau0: 0.3,
      anneal_step: 60,
      ...params,
    },
  });
}

async function assertParity(spec: RunSpec, targets: number[], skipReplica = -1) {
  const exp = getExperiment(spec.experiment);
  const want = await collect(exp.reference(exp.prepare(spec), spec), targets);
  const got = await collect(await wasmBackend.open(spec), targets);
  assert.deepEqual(got.snapshots.map((s) => s.step), want.snapshots.map((s) => s.step));
  want.snapshots.forEach((ws, i) => {
    const gs = got.snapshots[i];
    assert.deepEqual(Object.keys(gs.metrics).sort(), Object.keys(ws.metrics).sort());
    for (const [name, values] of Object.entries(ws.metrics)) {
      values.forEach((w, r) => {
        if (r === skipReplica) return;
        const g = gs.metrics[name][r];
        assert.ok(close(name, w, g), `${name}[${r}] at step ${ws.step}: reference ${w}, wasm ${g}`);
      });
    }
  });
  const key = (e: { step: number; type: string }) => `${e.type}@${e.step}`;
  if (skipReplica < 0) assert.deepEqual(got.events.map(key).sort(), want.events.map(key).sort());
  return { want, got };
}

const LARGE_LR_CASES: [string, Record<string, unknown>][] = [
  // Loss rule: ε1 chosen so that both replicas anneal mid-run (events asserted below).
  ["large-then-small", { eta1: [2, 3], eta2: 0.2, anneal: "loss", epsilon1: 0.6 }],
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step" }],
  ["small", { eta1: 2, eta2: [0.5, 0.3] }],
  ["small-preact-noise", { eta1: 2, eta2: 0.5, noise_off_step: 70, data: "shared" }],
  ["small", { eta1: 2, eta2: 0.5, blocks: "q" }],
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step", blocks: "q-plane", m_p: 4 }],
  // q-rays: the V block on the three rays (kernel raysLoss), and Ξ's sweep (raysPreactLoss).
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "loss", epsilon1: 0.6, blocks: "q-rays" }],
  ["small-preact-noise", { eta1: 2, eta2: 0.5, noise_off_step: 70, blocks: "q-rays", m_q: 6 }],
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step", blocks: "p" }],
  ["large-then-small", { eta1: 2, eta2: 0.2, anneal: "step", noise_pairs: "on" }],
];

// Separate block widths (issue 14): more rows on either side, and an odd count on each
// (m_p/2 = 5, m_q/2 = 3), through the anneal copy, the pattern and the pre-activation noise.
const WIDTH_CASES: [string, string, Record<string, unknown>][] = [
  ["large-lr", "large-then-small", { m_p: 10, m_q: 6, anneal: "loss", epsilon1: 0.6 }],
  ["large-lr", "small-preact-noise", { m_p: 6, m_q: 10, noise_off_step: 70 }],
  ["label-noise-anneal", "lnsgd-ls", { m_p: 10, m_q: 6, anneal: "step", delta: 0.2 }],
  ["label-noise-anneal", "fbgd-ls", { m_p: 6, m_q: 10, anneal: "loss", epsilon1: 0.3 }],
];

for (const [experiment, algo, params] of WIDTH_CASES) {
  testEachWasmBuild(
    `wasm = reference with m_p ≠ m_q: ${experiment} ${algo} ${JSON.stringify(params)}`,
    async () => {
      const steps = algo === "lnsgd-ls" ? 400 : 150;
      const spec = small(experiment, { algo, eta1: 2, eta2: 0.2, ...params }, steps);
      const { want } = await assertParity(spec, [37, steps]);
      // Both replicas annealed or stored their pattern, so flips compare the unequal layouts.
      const last = want.snapshots[want.snapshots.length - 1].metrics;
      assert.ok(last.activation_flips.some((v) => v > 0), "flips measured after the anneal");
    },
  );
}

for (const [algo, params] of LARGE_LR_CASES) {
  testEachWasmBuild(`wasm = reference: large-lr ${algo} ${JSON.stringify(params)}`, async () => {
    const spec = small("large-lr", { algo, ...params }, 150);
    const { want } = await assertParity(spec, [37, 150]);
    if (params.anneal === "loss") {
      assert.equal(want.events.filter((e) => e.type === "phase_change").length, 2);
    }
  });
}

const LABEL_NOISE_CASES: [string, Record<string, unknown>][] = [
  ["lnsgd-ls", { eta1: 1, eta2: 0.1, anneal: "loss", epsilon1: 0.3, anneal_check_every: 10 }],
  ["lnsgd-ls", { eta1: 1, eta2: 0.1, anneal: "step", delta: [0.1, 0.3] }],
  ["lnsgd-s", { eta2: 0.5, delta: 0.2, data: "shared" }],
  ["lnsgd-s", { eta2: 0.5, delta: 0.2, blocks: "q" }],
  ["fbgd-ls", { eta1: 2, eta2: 0.2, anneal: "step", blocks: "q-plane" }],
  ["fbgd-ls", { eta1: 2, eta2: 0.2, anneal: "loss", epsilon1: 0.3, blocks: "q-rays" }],
  ["lnsgd-ls", { eta1: 1, eta2: 0.1, anneal: "loss", epsilon1: 0.3, blocks: "q-rays" }],
  ["fbgd-ls", { eta1: [2, 3], eta2: 0.2, anneal: "loss", epsilon1: 0.3 }],
];

for (const [algo, params] of LABEL_NOISE_CASES) {
  testEachWasmBuild(
    `wasm = reference: label-noise-anneal ${algo} ${JSON.stringify(params)}`,
    async () => {
      const steps = algo === "fbgd-ls" ? 150 : 400;
      const { want } = await assertParity(small("label-noise-anneal", { algo, ...params }, steps), [
        53,
        steps,
      ]);
      if (params.anneal === "loss") {
        assert.equal(want.events.filter((e) => e.type === "phase_change").length, 2);
      }
    },
  );
}

testEachWasmBuild(
  "wasm and reference both freeze a diverging replica and report it once",
  async () => {
    // λ·η1 ≫ 2 makes the decay factor 1 − η1λ ≪ −1: replica 1's weights grow geometrically.
    // Float32 overflows decades before float64 does, so the two report different steps; the
    // other replica must be untouched and still agree.
    const spec = small("large-lr", {
      algo: "large-then-small",
      eta1: [2, 3000],
      eta2: 0.2,
      anneal: "step",
      anneal_step: 1000,
      lambda_scale: 10,
    }, 400);
    const { want, got } = await assertParity(spec, [100, 400], 1);
    for (const result of [want, got]) {
      const diverged = result.events.filter((e) => e.type === "replica_diverged");
      assert.deepEqual(diverged.map((e) => e.type === "replica_diverged" && e.replica), [1]);
      const last = result.snapshots[result.snapshots.length - 1];
      assert.ok(Number.isNaN(last.metrics.train_loss[1]));
      assert.ok(Number.isFinite(last.metrics.train_loss[0]));
    }
  },
);

// The stopping rule (pq_anneal.ts): settings where every listed replica stops mid-run, so
// the frozen weights, the stop steps and the *_at_stop metrics are compared too.
const STOP_CASES: [string, string, Record<string, unknown>, number, number[]][] = [
  ["large-lr", "large-then-small", { eta1: [2, 3], eta2: 1, anneal: "loss" }, 150, [1]],
  ["large-lr", "small", { eta1: 2, eta2: [2, 1.5] }, 150, [0, 1]],
  ["large-lr", "small-preact-noise", { eta1: 2, eta2: [2, 1.5], noise_off_step: 70 }, 150, [0, 1]],
  ["label-noise-anneal", "lnsgd-s", { eta2: 1, anneal_check_every: 10 }, 400, [0, 1]],
  ["label-noise-anneal", "fbgd-ls", { eta1: [2, 3], eta2: 1, anneal: "loss" }, 150, [1]],
];

for (const [experiment, algo, params, steps, stopped] of STOP_CASES) {
  testEachWasmBuild(`wasm = reference with the stopping rule: ${experiment} ${algo}`, async () => {
    const spec = small(experiment, {
      algo,
      ...params,
      stop: "loss",
      epsilon1: 0.15,
      ...(experiment === "large-lr" ? { lambda_scale: 0.01 } : {}),
    }, steps);
    const { want } = await assertParity(spec, [53, steps]);
    const stops = want.events.filter((e) => e.type === "phase_change" && e.phase === "stop");
    assert.deepEqual(stops.map((e) => e.type === "phase_change" && e.replica).sort(), stopped);
    const last = want.snapshots[want.snapshots.length - 1].metrics;
    for (const r of stopped) {
      assert.ok(last.stop_step[r] > 0 && last.train_loss_at_stop[r] <= 0.5, `replica ${r}`);
      // Frozen: the final loss is the loss at the stop.
      assert.equal(last.train_loss[r], last.train_loss_at_stop[r]);
    }
  });
}
