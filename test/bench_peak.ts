/**
 * The peak probe of `deno task bench --peers`: the Wasm SIMD128 float32 mul+add rate of one
 * core (kernels-as/peak_probe.ts) in GFLOP/s, best of several timed calls of a few ms after
 * warm-up calls (a first long call would stay in V8's baseline tier, see
 * server/engine/wasm/call_length.ts); best, not median, because it is a peak and other
 * processes on a shared machine only ever lower it.
 * Run as a process: prints {"peak_gflops": …} as one JSON line.
 */
import { instantiateKernel } from "../server/engine/wasm/backend.ts";

const ITERATIONS = 2_000_000;

export async function wasmSimdPeakGflops(): Promise<number> {
  const k = (await instantiateKernel("peak_probe")).exports as {
    mulAdd(iterations: number, seed: number): number;
    FLOP_PER_ITERATION: WebAssembly.Global;
  };
  // Calls long enough to exhaust the tier-up budget (short ones never do: measured).
  for (let i = 0; i < 10; i++) k.mulAdd(2_000_000, i);
  let best = 0;
  for (let round = 0; round < 20; round++) {
    const t0 = performance.now();
    const sink = k.mulAdd(ITERATIONS, round + 1);
    const seconds = (performance.now() - t0) / 1000;
    if (Number.isNaN(sink)) throw new Error("peak probe: NaN");
    best = Math.max(best, ITERATIONS * Number(k.FLOP_PER_ITERATION.value) / seconds / 1e9);
  }
  return best;
}

if (import.meta.main) console.log(JSON.stringify({ peak_gflops: await wasmSimdPeakGflops() }));
