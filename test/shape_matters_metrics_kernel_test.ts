/**
 * The Shape Matters kernel's metrics (kernels-as/shape_matters.ts writeMetrics) give the same
 * bits on their fast path (X transposed to float64 by prepareMetrics, rows summed in f64x2
 * lanes, eight at a time) as on the scalar path that data sets over its size limit take: every
 * algorithm, shared and per-replica data, row counts that leave a pair and an odd row after
 * the blocks of eight, a snapshot every step; in the strict and in the FMA build.
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
