/**
 * The replica-blocked Shape Matters kernel (four replicas on shared data stepped together,
 * kernels-as/shape_matters.ts stepBlock) gives bit-identical numbers to the one-replica path
 * (setBlocking(0)): every algorithm, replica counts that leave a remainder, call splits, and
 * replicas diverging inside a block at different steps while the others go on; in the
 * strict and in the FMA build (each compared with itself: FMA rounds differently).
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type { AdvanceResult, RunSpec } from "../server/experiments/types.ts";
import { instantiateKernel } from "../server/engine/wasm/backend.ts";
import type { WasmBuild } from "../server/engine/wasm/builds.ts";
import { testEachWasmBuild } from "./wasm_builds.ts";
import { openShapeMattersSession } from "../server/engine/wasm/shape_matters.ts";
import { ALGOS } from "../server/experiments/shape_matters.ts";

await ensureWasm();

async function run(
  spec: RunSpec,
  blocked: boolean,
  targets: number[],
  build: WasmBuild,
): Promise<AdvanceResult[]> {
  const instance = await instantiateKernel("shape_matters", build);
  (instance.exports.setBlocking as (on: number) => void)(blocked ? 1 : 0);
  const session = openShapeMattersSession(spec, instance);
  const results: AdvanceResult[] = [];
  for (const t of targets) results.push(await session.advance(t));
  await session.dispose();
  return results;
}

/** Bit-level equality of everything the session reported (NaN equals NaN). */
function assertSame(a: AdvanceResult[], b: AdvanceResult[], what: string) {
  assert.equal(a.length, b.length);
  a.forEach((ra, c) => {
    const rb = b[c];
    assert.deepEqual(ra.events, rb.events, `${what}: events of call ${c}`);
    assert.equal(ra.snapshots.length, rb.snapshots.length, `${what}: snapshots of call ${c}`);
    ra.snapshots.forEach((sa, k) => {
      const sb = rb.snapshots[k];
      assert.equal(sa.step, sb.step);
      for (const [name, values] of Object.entries(sa.metrics)) {
        assert.deepEqual(
          new Uint32Array(values.buffer, values.byteOffset, values.length),
          new Uint32Array(sb.metrics[name].buffer, sb.metrics[name].byteOffset, values.length),
          `${what}: ${name} at step ${sa.step}`,
        );
      }
    });
    ra.frames.forEach((fa, k) => {
      const fb = rb.frames[k];
      assert.deepEqual(new Uint32Array(fa.values.buffer), new Uint32Array(fb.values.buffer));
    });
  });
}

for (const algo of ALGOS) {
  testEachWasmBuild(
    `shape-matters ${algo}: the blocked kernel equals the one-replica kernel`,
    async (build) => {
      // 9 replicas: two blocks and one left over; d = 26 (7 vectors) leaves a one-vector tail
      // after the two-vector passes, n = 13 an odd row after the two-row passes.
      const spec = validateRunSpec({
        experiment: "shape-matters",
        params: {
          algo,
          d: 26,
          n: 13,
          r: 3,
          lr: [0.01, 0.02, 0.005, 0.01, 0.015, 0.01, 0.008, 0.01, 0.02],
        },
        replicas: 9,
        steps: 300,
        every: 7,
      });
      const targets = [1, 50, 123, 300];
      assertSame(
        await run(spec, true, targets, build),
        await run(spec, false, targets, build),
        algo,
      );
    },
  );
}

testEachWasmBuild(
  "shape-matters: replicas diverging inside a block at different steps",
  async (build) => {
    // Replica 1 and 6 blow up (at different steps); their block mates carry on alone.
    const spec = validateRunSpec({
      experiment: "shape-matters",
      params: { algo: "label-noise", d: 22, lr: [0.01, 10, 0.01, 0.01, 0.01, 0.01, 2, 0.01] },
      replicas: 8,
      steps: 60,
      every: 1,
    });
    const targets = [3, 20, 60];
    const blocked = await run(spec, true, targets, build);
    assert.equal(blocked.flatMap((r) => r.events).length, 2, "two replicas are meant to diverge");
    assertSame(blocked, await run(spec, false, targets, build), "divergence");
  },
);
