/**
 * The wasm kernels' FMA build against the strict build, in one process: each round opens a
 * session of each build (alternating which goes first) and times advance() over the same
 * steps; prints min/median steps/s per build and the ratio of medians, per case. Many short
 * rounds, interleaved, because this machine is shared: medians, not means. Time is this
 * thread's CPU time (/proc/thread-self/schedstat, Linux), so time spent descheduled while
 * other jobs run is left out (wall-clock medians on a loaded 2-core box swing by 2×).
 * Not a test.
 *   deno run -A test/bench_fma.ts [--rounds=N]
 */
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { wasmBackendFor } from "../server/engine/wasm/backend.ts";
import { WASM_BUILD_NAMES, type WasmBuild } from "../server/engine/wasm/builds.ts";

await ensureWasm();

const CASES: Record<string, Record<string, unknown>> = {
  "shape-matters R=1": { experiment: "shape-matters", replicas: 1, steps: 60_000, every: 1000 },
  "shape-matters R=256 shared": {
    experiment: "shape-matters",
    replicas: 256,
    steps: 1000,
    every: 1000,
    params: { data: "shared" },
  },
  "linear-label-noise R=1": {
    experiment: "linear-label-noise",
    replicas: 1,
    steps: 20_000,
    every: 1000,
  },
  "pegr R=1": { experiment: "pegr", replicas: 1, steps: 2000, every: 1000 },
};

/** This thread's time on a CPU in ns (the first field of its schedstat). */
function cpuNs(): number {
  return Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]);
}

async function stepsPerSecond(body: Record<string, unknown>, build: WasmBuild): Promise<number> {
  const spec = validateRunSpec({ ...body, backend: "wasm" });
  const session = await wasmBackendFor(build).open(spec);
  try {
    await session.advance(1); // step-0 snapshot and first call out of the timing
    const t0 = cpuNs();
    await session.advance(spec.steps);
    return (spec.steps - 1) / ((cpuNs() - t0) / 1e9);
  } finally {
    await session.dispose();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const arg = Deno.args.find((a) => a.startsWith("--rounds="));
const rounds = arg ? Number(arg.slice(9)) : 15;
for (const [name, body] of Object.entries(CASES)) {
  const got: Record<WasmBuild, number[]> = { strict: [], fma: [] };
  // Two rounds of each build first, untimed: V8 tiers a kernel up over its first calls.
  for (let i = 0; i < 2; i++) {
    for (const build of WASM_BUILD_NAMES) await stepsPerSecond(body, build);
  }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 ? [...WASM_BUILD_NAMES].reverse() : WASM_BUILD_NAMES;
    for (const build of order) got[build].push(await stepsPerSecond(body, build));
  }
  const line = WASM_BUILD_NAMES.map((b) =>
    `${b} min ${Math.min(...got[b]).toFixed(0)} median ${median(got[b]).toFixed(0)}`
  ).join("; ");
  console.log(
    `${name} (steps/s, ${rounds} rounds): ${line}; fma ÷ strict ${
      (median(got.fma) / median(got.strict)).toFixed(3)
    }`,
  );
}
