/**
 * Block-alone runs of the P/Q experiments (`blocks=p|q`, server/experiments/pq_model.ts): the
 * same draws as `blocks=both` with the other block's inputs zeroed, so the other block's
 * weights feel only decay and noise (with neither, they do not move), and the runs pair with
 * the two-block run on the same seeds.
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import { generateRunData, pqShape } from "../server/experiments/pq_model.ts";
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
  assert.ok(q.x1.every((v) => v === 0) && q.testX1.every((v) => v === 0));
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
