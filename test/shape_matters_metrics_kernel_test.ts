/**
 * The Shape Matters kernel's metrics (kernels-as/shape_matters.ts writeMetrics) give the same
 * bits on their fast path (X transposed to float64 by prepareMetrics, rows summed in f64x2
 * lanes, eight at a time) as on the scalar path that data sets over its size limit take: every
 * algorithm, shared and per-replica data, row counts that leave a pair and an odd row after
 * the blocks of eight, a snapshot every step; in the strict and in the FMA build. And the
 * replica-blocked path's metrics (writeMetricsBlock: four replicas on shared data in f64x2
 * lanes) give the bits of writeMetrics per replica (setBlockMetrics(0)): dimensions and row
 * counts that leave every tail, replicas left over after the blocks, and replicas diverging
 * inside a call and before it (their blocks go on one replica at a time).
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { instantiateKernel } from "../server/engine/wasm/backend.ts";
import type { WasmBuild } from "../server/engine/wasm/builds.ts";
import { openShapeMattersSession } from "../server/engine/wasm/shape_matters.ts";
import { ALGOS } from "../server/experiments/shape_matters.ts";
import { testEachWasmBuild } from "./wasm_builds.ts";
import type { RunSpec } from "../server/experiments/types.ts";

await ensureWasm();

/** Every metric's bits at every snapshot, on the fast path or (`scalar`) without it. */
async function metricBits(spec: RunSpec, scalar: boolean, build: WasmBuild) {
  const instance = await instantiateKernel("shape_matters", build);
  // Without prepareMetrics the kernel keeps XT unset: the scalar path.
  const kernel = scalar
    ? { exports: { ...instance.exports, prepareMetrics() {} } } as unknown as WebAssembly.Instance
    : instance;
  const session = openShapeMattersSession({ ...spec, backend: "wasm" }, kernel);
  const { columns } = await session.advance(spec.steps, { columns: true });
  await session.dispose();
  return Object.entries(columns!.metrics).map(([name, v]) => ({
    name,
    bits: Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length)),
  }));
}

for (const algo of ALGOS) {
  testEachWasmBuild(
    `shape-matters ${algo}: the metrics' f64x2 path gives the scalar path's bits`,
    async (build) => {
      for (const [n, data] of [[21, "shared"], [4, "per-replica"], [3, "shared"]] as const) {
        const spec = validateRunSpec({
          experiment: "shape-matters",
          params: { algo, d: 13, n, r: 3, data, lr: [0.01, 0.02, 0.005, 10, 0.015] },
          replicas: 5,
          steps: 60,
          every: 1,
        });
        assert.deepStrictEqual(
          await metricBits(spec, false, build),
          await metricBits(spec, true, build),
          `n=${n}, ${data} data`,
        );
      }
    },
  );
}

/**
 * Every metric's bits at every snapshot of calls up to each of `targets`, with the blocked
 * path's metrics written four replicas at once (`block`) or one replica at a time.
 */
async function blockMetricBits(spec: RunSpec, block: boolean, targets: number[], build: WasmBuild) {
  const instance = await instantiateKernel("shape_matters", build);
  (instance.exports.setBlockMetrics as (on: number) => void)(block ? 1 : 0);
  const session = openShapeMattersSession({ ...spec, backend: "wasm" }, instance);
  const calls = [];
  for (const t of targets) {
    const { columns } = await session.advance(t, { columns: true });
    calls.push(
      Object.entries(columns!.metrics).map(([name, v]) => ({
        name,
        bits: Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length)),
      })),
    );
  }
  await session.dispose();
  return calls;
}

testEachWasmBuild(
  "shape-matters: the blocked path's four-replica metrics give the per-replica metrics' bits",
  async (build) => {
    // d = 1, 3, 7 and 13 leave tails of the four-lane state vectors; n = 1 … 11 every row tail
    // after the four-row passes (n < 4 has none of those); 9 replicas: two blocks and one left.
    const shapes = [[1, 3], [3, 1], [7, 2], [13, 11], [20, 10], [4, 5], [23, 6]];
    for (const [d, n] of shapes) {
      const spec = validateRunSpec({
        experiment: "shape-matters",
        params: {
          algo: "label-noise",
          d,
          n,
          r: 1,
          lr: [0.01, 0.02, 0.005, 0.01, 0.015, 0.01, 0.008, 0.01, 0.02],
        },
        replicas: 9,
        steps: 40,
        every: 1,
      });
      assert.deepStrictEqual(
        await blockMetricBits(spec, true, [17, 40], build),
        await blockMetricBits(spec, false, [17, 40], build),
        `d=${d}, n=${n}`,
      );
    }
  },
);

testEachWasmBuild(
  "shape-matters: a replica diverging stops the four-replica metrics for its block only",
  async (build) => {
    // Replica 1 diverges in the first call, replica 6 in the second (lr 0.7 takes longer than
    // lr 2): each block goes on one replica at a time from that step, the other stays blocked.
    const lr = [0.01, 2, 0.005, 0.01, 0.015, 0.01, 0.7, 0.01, 0.02];
    const spec = validateRunSpec({
      experiment: "shape-matters",
      params: { d: 13, n: 7, r: 3, lr },
      replicas: 9,
      steps: 60,
      every: 1,
    });
    const targets = [6, 60];
    const blocked = await blockMetricBits(spec, true, targets, build);
    assert.deepStrictEqual(blocked, await blockMetricBits(spec, false, targets, build));
    // The divergences happened where the test means them to: mid-call, one in each call.
    const loss = (call: number, r: number) => {
      const bits = blocked[call].find((m) => m.name === "train_loss")!.bits;
      return bits.filter((_, j) => j % 9 === r).map((b) =>
        Number.isNaN(new Float32Array(new Uint32Array([b]).buffer)[0])
      );
    };
    assert.ok(loss(0, 1).includes(false) && loss(0, 1).at(-1), "replica 1 diverges in call 1");
    assert.ok(!loss(0, 6).includes(true), "replica 6 is live through call 1");
    assert.ok(loss(1, 6).includes(false) && loss(1, 6).at(-1), "replica 6 diverges in call 2");
    for (const r of [0, 2, 3, 4, 5, 7, 8]) {
      assert.ok(!loss(1, r).includes(true), `replica ${r} is live`);
    }
  },
);
