/**
 * Block-alone runs of the P/Q experiments (`blocks=p|q`, server/experiments/pq_model.ts): the
 * same draws as `blocks=both` with the other block's inputs zeroed, so the other block's
 * weights feel only decay and noise (with neither, they do not move), and the runs pair with
 * the two-block run on the same seeds. blocks=q-plane skips what never meets the data and
 * must give blocks=q's numbers bit for bit.
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import { generateRunData, PLANE_UNTRACKED, pqShape } from "../server/experiments/pq_model.ts";
import type { RunSpec } from "../server/experiments/types.ts";
import { wasmBackend } from "../server/engine/wasm/backend.ts";
import { ensureWasm } from "../server/build_wasm.ts";

await ensureWasm();
import { initLargeLrReplica, largeLrStep, prepareLargeLr } from "../server/experiments/large_lr.ts";

function params(blocks: string) {
  return {
    algo: "small",
    d: 12,
    kappa_sq: 0.25,
    m: 10,
    n_test: 20,
    r_scale: 10,
    tau0: 0.3,
    eta2: 1,
    xi_scale: 0,
    lambda_scale: 0,
    blocks,
  };
}

Deno.test("blocks=p|q zero the other block's inputs and keep every other draw", () => {
  const shape = (b: string) =>
    pqShape(validateRunSpec({ experiment: "large-lr", params: params(b) }).params);
  const both = generateRunData(shape("both"), 3, 1);
  const p = generateRunData(shape("p"), 3, 1), q = generateRunData(shape("q"), 3, 1);
  for (const one of [p, q]) {
    assert.deepEqual(one.y, both.y);
    assert.deepEqual(one.subset, both.subset);
    assert.deepEqual(one.testY, both.testY);
  }
  assert.deepEqual(p.x1, both.x1);
  assert.ok(p.x2.every((v) => v === 0) && p.testX2.every((v) => v === 0));
  assert.deepEqual(q.x2, both.x2);
  // x1 = 0 is not stored: the Q block alone never reads it (pq_model.ts x1IsZero).
  assert.ok(q.x1.length === 0 && q.testX1.length === 0);
});

Deno.test("without noise and decay, the block left out does not move", () => {
  for (const [blocks, still, moves] of [["p", "V", "W"], ["q", "W", "V"]] as const) {
    const prep = prepareLargeLr(
      validateRunSpec({ experiment: "large-lr", params: params(blocks) }),
    );
    const state = initLargeLrReplica(prep, 0);
    const before = { W: state.net.W.slice(), V: state.net.V.slice() };
    for (let t = 0; t < 20; t++) largeLrStep(prep, state, 0, t);
    assert.deepEqual(state.net[still], before[still], `${blocks}: ${still}`);
    assert.notDeepEqual(state.net[moves], before[moves], `${blocks}: ${moves}`);
  }
});

Deno.test("the Q block alone learns Q; its P-only examples carry no input", async () => {
  const spec = validateRunSpec({
    experiment: "large-lr",
    replicas: 1,
    steps: 300,
    every: 300,
    backend: "reference",
    params: { ...params("q"), eta2: 5, r_scale: 20 },
  });
  const exp = getExperiment("large-lr");
  const { snapshots } = await exp.reference(exp.prepare(spec), spec).advance(300);
  const [first, last] = [snapshots[0].metrics, snapshots[snapshots.length - 1].metrics];
  assert.ok(last.train_loss_q_only[0] < first.train_loss_q_only[0] - 0.02);
  assert.ok(Math.abs(last.train_loss_p_only[0] - Math.LN2) < 1e-6, "f = 0 on P-only examples");
});

// ---------------------------------------------------------------------------------------
// blocks=q-plane: the Q block alone in its 2-D plane (no factor d per step), against q.

/** Every snapshot and event of a run on one backend. */
async function runAll(spec: RunSpec) {
  const session = spec.backend === "wasm"
    ? await wasmBackend.open(spec)
    : getExperiment(spec.experiment).reference(getExperiment(spec.experiment).prepare(spec), spec);
  const r = await session.advance(spec.steps);
  await session.dispose();
  return r;
}

const PLANE_CASES: [string, Record<string, unknown>][] = [
  // Noise and decay on, loss-triggered anneal: the plane's draws must be the full update's.
  ["large-lr", {
    algo: "large-then-small",
    eta1: 2,
    eta2: 0.5,
    anneal: "loss",
    epsilon1: 0.05,
    q0: 0.8,
    lambda_scale: 1,
    xi_scale: 1,
  }],
  ["large-lr", { algo: "small-preact-noise", eta2: 1, noise_off_step: 30, m_p: 6, m_q: 12 }],
  ["label-noise-anneal", { algo: "lnsgd-ls", eta1: 1, eta2: 0.2, anneal_step: 100 }],
  ["label-noise-anneal", { algo: "fbgd-ls", eta1: 2, eta2: 0.2, anneal_step: 40 }],
];

for (const backend of ["reference", "wasm"] as const) {
  for (const [experiment, over] of PLANE_CASES) {
    Deno.test(`${backend}: blocks=q-plane gives blocks=q's Q metrics bit for bit: ${experiment} ${over.algo}`, async () => {
      const spec = (blocks: string) =>
        validateRunSpec({
          experiment,
          replicas: 2,
          steps: 200,
          every: 50,
          backend,
          params: {
            d: 14,
            kappa_sq: 0.25,
            m: 10,
            n_test: 20,
            r_scale: 10,
            tau0: 0.3,
            blocks,
            ...over,
          },
        });
      const [q, plane] = [await runAll(spec("q")), await runAll(spec("q-plane"))];
      assert.equal(plane.snapshots.length, q.snapshots.length);
      q.snapshots.forEach((s, i) => {
        for (const [name, values] of Object.entries(s.metrics)) {
          const got = Array.from(plane.snapshots[i].metrics[name]);
          const base = name.replace(/_at_(anneal|stop)$/, "");
          if ((PLANE_UNTRACKED as readonly string[]).includes(base)) {
            assert.ok(got.every(Number.isNaN), `${name} is NaN on the plane`);
          } else {
            assert.deepEqual(got, Array.from(values), `${name} at step ${s.step}`);
          }
        }
      });
      const last = q.snapshots.at(-1)!.metrics;
      assert.ok(
        last.train_loss_q_only.some((v, r) => v < q.snapshots[0].metrics.train_loss_q_only[r]),
      );
      assert.deepEqual(plane.events.map((e) => e.type), q.events.map((e) => e.type));
    });
  }
}

Deno.test("blocks=q-plane moves only V's columns along z and ζ/r", () => {
  const prep = prepareLargeLr(validateRunSpec({
    experiment: "large-lr",
    params: { ...params("q-plane"), xi_scale: 1, lambda_scale: 1, eta2: 0.5 },
  }));
  const state = initLargeLrReplica(prep, 0);
  const before = { W: state.net.W.slice(), V: state.net.V.slice() };
  for (let t = 0; t < 10; t++) largeLrStep(prep, state, 0, t);
  assert.deepEqual(state.net.W, before.W);
  const { d } = prep.shape;
  state.net.V.forEach((v, k) => {
    if (k % d < 2) assert.notEqual(v, before.V[k], `V[${k}] moves`);
    else assert.equal(v, before.V[k], `V[${k}] is off the plane`);
  });
});
