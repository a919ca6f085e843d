/**
 * blocks=q-rays (server/experiments/pq_model.ts raysLossAndGradient): the Q block alone with
 * the examples grouped by their ray, g(αu) = α·g(u), so a pass over the data costs O(N + m_q).
 * Same draws as blocks=q-plane, so the two agree up to rounding: to float64 rounding when the
 * rays are exact in float32 (r a power of two), else to the float32 rounding of each
 * example's stored ζ coordinate. Not bit for bit. WebGPU refuses the mode.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { RunSpec } from "../server/experiments/types.ts";
import { wasmBackend } from "../server/engine/wasm/backend.ts";
import { WEBGPU_SESSIONS } from "../server/engine/webgpu/backend.ts";
import { SpecError } from "../server/experiments/schema.ts";
import {
  generateRunData,
  pqShape,
  RAY_MINUS,
  RAY_NONE,
  RAY_PLUS,
  RAY_Z,
} from "../server/experiments/pq_model.ts";
import { initLargeLrReplica, largeLrStep, prepareLargeLr } from "../server/experiments/large_lr.ts";
import {
  initLabelNoiseReplica,
  labelNoiseStep,
  prepareLabelNoise,
} from "../server/experiments/label_noise_anneal.ts";
import { runLab } from "./lab_harness.ts";
import { openSession } from "../server/engine/open.ts";
import { decodeRecord, encodeRecord } from "../server/runs/records.ts";
import type { SessionState } from "../server/experiments/types.ts";

await ensureWasm();

/** Every algorithm of both experiments, with noise, decay, anneals and the stop rule on. */
const CASES: [string, Record<string, unknown>][] = [
  ["large-lr", {
    algo: "large-then-small",
    eta1: 2,
    eta2: 0.5,
    anneal: "loss",
    epsilon1: 0.05,
    q0: 0.8,
    lambda_scale: 1,
    xi_scale: 1,
    stop: "loss",
  }],
  ["large-lr", { algo: "small", eta2: 1 }],
  ["large-lr", { algo: "small-preact-noise", eta2: 1, noise_off_step: 100, m_p: 6, m_q: 12 }],
  // Ξ on throughout, 32 V units: the sweep's sort of breakpoints over many units.
  ["large-lr", { algo: "small-preact-noise", eta2: 1, noise_off_step: 1000, m_q: 64 }],
  ["label-noise-anneal", {
    algo: "lnsgd-ls",
    eta1: 1,
    eta2: 0.2,
    delta: 0.1,
    anneal_check_every: 10,
  }],
  ["label-noise-anneal", { algo: "lnsgd-s", eta2: 0.5, delta: 0.1 }],
  ["label-noise-anneal", { algo: "fbgd-ls", eta1: 2, eta2: 0.2 }],
];

const base = { kappa_sq: 0.25, m: 10, n_test: 20, tau0: 0.3 };

/** A case's name: its algorithm, and m_q where set. */
const label = (over: Record<string, unknown>) =>
  `${over.algo}${over.m_q ? ` m_q=${over.m_q}` : ""}`;

/** V (float64) and the anneal step of replica 0 after `steps` reference updates. */
function referenceV(experiment: string, params: Record<string, unknown>, steps: number) {
  const spec = validateRunSpec({ experiment, params: { ...base, ...params } });
  if (experiment === "large-lr") {
    const prep = prepareLargeLr(spec);
    const state = initLargeLrReplica(prep, 0);
    for (let t = 0; t < steps; t++) largeLrStep(prep, state, 0, t);
    return { V: state.net.V, annealedAt: state.annealedAt };
  }
  const prep = prepareLabelNoise(spec);
  const state = initLabelNoiseReplica(prep, 0);
  for (let t = 0; t < steps; t++) labelNoiseStep(prep, state, 0, t);
  return { V: state.net.V, annealedAt: state.annealedAt };
}

/** max |a − b| / max |a| over the arrays. */
function relMax(a: Float64Array, b: Float64Array): number {
  let num = 0, den = 0;
  a.forEach((v, k) => (num = Math.max(num, Math.abs(v - b[k])), den = Math.max(den, Math.abs(v))));
  return num / den;
}

// d = 16, r_scale = 4: r = 4·16^(−3/4) = 0.5, so α·(±r) is exact in float32 and every stored
// x2 lies exactly on its ray. Measured: ≤ 2.5e-16 after 300 steps.
for (const [experiment, over] of CASES) {
  Deno.test(`reference: q-rays = q-plane to float64 rounding on exact rays: ${experiment} ${label(over)}`, () => {
    const params = (blocks: string) => ({ ...over, d: 16, r_scale: 4, blocks });
    const plane = referenceV(experiment, params("q-plane"), 300);
    const rays = referenceV(experiment, params("q-rays"), 300);
    assert.ok(relMax(plane.V, rays.V) <= 1e-12, `relative ${relMax(plane.V, rays.V)}`);
    assert.equal(rays.annealedAt, plane.annealedAt);
  });
}

// A general r: each example's ζ coordinate float32(α·b·r) differs from α·float32(r) by ≤ 1 ulp.
// Measured: ≤ 1.4e-8 after 300 steps (the SGD updates themselves are per example and equal).
for (const [experiment, over] of CASES) {
  Deno.test(`reference: q-rays within 1e-6 of q-plane for a general r: ${experiment} ${label(over)}`, () => {
    const params = (blocks: string) => ({ ...over, d: 14, r_scale: 10, blocks });
    const plane = referenceV(experiment, params("q-plane"), 300);
    const rays = referenceV(experiment, params("q-rays"), 300);
    assert.ok(relMax(plane.V, rays.V) <= 1e-6, `relative ${relMax(plane.V, rays.V)}`);
    assert.equal(rays.annealedAt, plane.annealedAt);
  });
}

/**
 * Snapshot tolerance (metrics are float32), relative to max(|a|, |b|, 0.01) as the wasm
 * parity test (test/parity_wasm_pq_test.ts) measures: reference 1e-5 (measured ≤ 3e-6),
 * wasm its parity tolerance 2e-4 (measured ≤ 2e-5); error rates and anneal steps exactly.
 */
const SNAPSHOT_TOL = { reference: 1e-5, wasm: 2e-4 };

async function runAll(spec: RunSpec) {
  const exp = getExperiment(spec.experiment);
  const session = spec.backend === "wasm"
    ? await wasmBackend.open(spec)
    : exp.reference(exp.prepare(spec), spec);
  const r = await session.advance(spec.steps);
  await session.dispose();
  return r;
}

for (const backend of ["reference", "wasm"] as const) {
  for (const [experiment, over] of CASES) {
    Deno.test(`${backend}: q-rays gives q-plane's metrics and events up to rounding: ${experiment} ${label(over)}`, async () => {
      const spec = (blocks: string) =>
        validateRunSpec({
          experiment,
          replicas: 2,
          steps: 400,
          every: 50,
          backend,
          params: { ...base, d: 14, r_scale: 10, blocks, ...over },
        });
      const [plane, rays] = [await runAll(spec("q-plane")), await runAll(spec("q-rays"))];
      assert.equal(rays.snapshots.length, plane.snapshots.length);
      plane.snapshots.forEach((s, i) => {
        for (const [name, values] of Object.entries(s.metrics)) {
          values.forEach((a, r) => {
            const b = rays.snapshots[i].metrics[name][r];
            const where = `${name}[${r}] at step ${s.step}: q-plane ${a}, q-rays ${b}`;
            if (Number.isNaN(a)) return assert.ok(Number.isNaN(b), where);
            if (name.includes("error") || name.includes("step") || name === "lr") {
              return assert.ok(Math.abs(a - b) <= 1e-6, where);
            }
            const scale = Math.max(Math.abs(a), Math.abs(b), 0.01);
            assert.ok(Math.abs(a - b) <= SNAPSHOT_TOL[backend] * scale, where);
          });
        }
      });
      const last = rays.snapshots.at(-1)!.metrics.train_loss_q_only;
      assert.ok(last.some((v, r) => v < rays.snapshots[0].metrics.train_loss_q_only[r]));
      const events = (r: typeof plane) => r.events.map((e) => `${e.type}@${e.step}`);
      assert.deepEqual(events(rays), events(plane));
    });
  }
}

Deno.test("q-rays reads each example's ray from q-plane's data: α·u equals x2 to float32 rounding", () => {
  const shape = (blocks: string) =>
    pqShape(validateRunSpec({ experiment: "large-lr", params: { ...base, d: 14, blocks } }).params);
  const plane = generateRunData(shape("q-plane"), 5, 2);
  const rays = generateRunData(shape("q-rays"), 5, 2);
  assert.deepEqual(rays.x2, plane.x2);
  assert.deepEqual(rays.y, plane.y);
  assert.deepEqual(rays.subset, plane.subset);
  assert.equal(rays.x1.length, 0, "the Q block alone stores no x1");
  const seen = new Set<number>();
  rays.ray!.forEach((k, i) => {
    seen.add(k);
    const alpha = rays.x2[2 * i], c1 = rays.x2[2 * i + 1];
    if (k === RAY_NONE) return assert.ok(rays.subset[i] === 0 || alpha === 0);
    const sign = k === RAY_Z ? 0 : k === RAY_PLUS ? 1 : -1;
    assert.equal(rays.y[i] > 0, k === RAY_Z, `example ${i}: label +1 lies on z`);
    assert.ok(Math.abs(alpha * sign * rays.rF32 - c1) <= 2 ** -23 * Math.abs(c1));
  });
  assert.deepEqual([...seen].sort(), [RAY_Z, RAY_PLUS, RAY_MINUS, RAY_NONE]);
});

for (const experiment of ["large-lr", "label-noise-anneal"]) {
  Deno.test(`webgpu refuses ${experiment} with blocks=q-rays, naming the field`, () => {
    const spec = validateRunSpec({
      experiment,
      replicas: 1,
      steps: 10,
      every: 5,
      backend: "webgpu",
      params: { d: 8, m: 8, blocks: "q-rays" },
    });
    assert.throws(
      () => WEBGPU_SESSIONS[experiment](spec),
      (e: unknown) =>
        e instanceof SpecError && e.errors[0].field === "params.blocks" &&
        /webgpu backend does not run blocks = q-rays/.test(e.message),
    );
  });
}

Deno.test("lab show lists blocks=q-rays with its cost; an unknown mode is a field error", async () => {
  const show = await runLab("show", "large-lr");
  assert.equal(show.code, 0);
  assert.match(
    show.stdout,
    /q-rays: as q-plane, with the examples grouped by their ray.*O\(N \+ m_q\)/,
  );
  const bad = await runLab("run", "large-lr", "--blocks=rays", "--steps=1");
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /params\.blocks/);
});

for (const backend of ["reference", "wasm"] as const) {
  Deno.test(`${backend}: a q-rays run continues bit-identically from a checkpoint after its anneal`, async () => {
    const spec = validateRunSpec({
      experiment: "large-lr",
      replicas: 2,
      steps: 300,
      every: 50,
      backend,
      params: { ...base, d: 14, r_scale: 10, blocks: "q-rays", ...CASES[0][1] },
    });
    const straight = await openSession(spec);
    await straight.advance(100);
    const want = await straight.advance(300);
    await straight.dispose();
    const first = await openSession(spec);
    const head = await first.advance(100);
    assert.ok(head.events.some((e) => e.type === "phase_change"), "annealed before the checkpoint");
    const state = decodeRecord<SessionState>(encodeRecord((await first.exportState!())!));
    await first.dispose();
    const resumed = await openSession(spec, state);
    const got = await resumed.advance(300);
    await resumed.dispose();
    const strip = (r: typeof want) =>
      r.snapshots.map((s) => ({ step: s.step, metrics: s.metrics }));
    assert.deepEqual(strip(got), strip(want));
    assert.deepEqual(got.events, want.events);
    assert.ok(want.snapshots.at(-1)!.metrics.activation_flips.some((v) => v > 0));
  });
}
