/**
 * Wasm sessions cut a long advance() into kernel calls of bounded work
 * (server/engine/wasm/call_length.ts): V8 keeps a running call in its baseline tier, so one
 * call covering a whole run with a large `every` used to run 5–10× slower. Checked without
 * timing: a spy on the kernel's advance records every call's step count, and the results
 * equal those of the same run cut at every snapshot.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type { KernelSession, RunSpec } from "../server/experiments/types.ts";
import { instantiateKernel } from "../server/engine/wasm/backend.ts";
import { openShapeMattersSession } from "../server/engine/wasm/shape_matters.ts";
import { openLinearLabelNoiseSession } from "../server/engine/wasm/linear_label_noise.ts";
import { openPegrSession } from "../server/engine/wasm/pegr.ts";
import { stepsPerCall } from "../server/engine/wasm/call_length.ts";

await ensureWasm();

type Opener = (spec: RunSpec, instance: WebAssembly.Instance) => KernelSession;

/** An instance whose exported advance() records each call's step count (argument 1). */
async function spiedInstance(kernel: string, counts: number[]): Promise<WebAssembly.Instance> {
  const real = await instantiateKernel(kernel);
  const exports = { ...real.exports } as Record<string, unknown>;
  const advance = real.exports.advance as (...args: number[]) => number;
  exports.advance = (...args: number[]) => {
    counts.push(args[1]);
    return advance(...args);
  };
  return { exports } as unknown as WebAssembly.Instance;
}

async function finalMetrics(open: Opener, kernel: string, spec: RunSpec, counts: number[]) {
  const session = open(spec, await spiedInstance(kernel, counts));
  try {
    const result = await session.advance(spec.steps);
    return result.snapshots.at(-1)!.metrics;
  } finally {
    await session.dispose();
  }
}

const CASES: Array<{
  name: string;
  kernel: string;
  open: Opener;
  params: Record<string, unknown>;
  steps: number;
  flop: (p: Record<string, unknown>) => number;
}> = [
  {
    name: "shape-matters",
    kernel: "shape_matters",
    open: openShapeMattersSession,
    params: { algo: "label-noise", d: 400, n: 160 },
    steps: 400,
    flop: (p) => 4 * (p.n as number) * (p.d as number) + 6 * (p.d as number),
  },
  {
    name: "linear-label-noise",
    kernel: "linear_label_noise",
    open: openLinearLabelNoiseSession,
    params: { algo: "label-noise-sgd", frame_every: 0, m: 4000, d: 64 },
    steps: 400,
    flop: (p) => 4 * (p.m as number) * (p.d as number) + 12 * (p.m as number),
  },
  {
    name: "pegr",
    kernel: "pegr",
    open: openPegrSession,
    params: { algo: "pegr", m: 64, n: 60, d: 128, n_test: 20 },
    steps: 100,
    flop: (p) => 8 * (p.m as number) * (p.n as number) * (p.d as number),
  },
];

for (const c of CASES) {
  Deno.test(`${c.name}: a long advance() is cut into bounded kernel calls, same results`, async () => {
    const replicas = 2;
    const spec = (every: number) =>
      validateRunSpec({ experiment: c.name, params: c.params, replicas, steps: c.steps, every });
    const longCounts: number[] = [];
    const long = await finalMetrics(c.open, c.kernel, spec(c.steps), longCounts);
    const limit = stepsPerCall(replicas, c.flop(spec(c.steps).params));
    assert.ok(limit < c.steps, `the case must be large enough to need cutting (${limit})`);
    assert.ok(
      Math.max(...longCounts) <= limit,
      `${c.name}: a kernel call ran ${Math.max(...longCounts)} steps, more than ${limit}`,
    );
    const cut = await finalMetrics(c.open, c.kernel, spec(10), []);
    for (const [name, values] of Object.entries(cut)) {
      assert.deepEqual(Array.from(long[name]), Array.from(values), `${c.name} ${name}`);
    }
  });
}
