/**
 * The peak probe of `deno task bench --peers`: the Wasm SIMD128 float32 mul+add rate of one
 * core (kernels-as/peak_probe.ts, strict build) and its fused multiply-add rate (the FMA
 * build's relaxed_madd, null where the engine has no relaxed SIMD) in GFLOP/s, best of several timed calls of a few ms after
 * warm-up calls (a first long call would stay in V8's baseline tier, see
 * server/engine/wasm/call_length.ts); best, not median, because it is a peak and other
 * processes on a shared machine only ever lower it.
 * Run as a process: prints {"peak_gflops": …, "fma_peak_gflops": …} as one JSON line.
 */
import { instantiateKernel } from "../server/engine/wasm/backend.ts";
import { relaxedSimdAvailable } from "../server/engine/wasm/builds.ts";

const ITERATIONS = 2_000_000;

type Probe = (iterations: number, seed: number) => number;

/** Best GFLOP/s of `probe` over timed calls, after warm-up calls. */
function bestGflops(probe: Probe, flopPerIteration: number): number {
  // Calls long enough to exhaust the tier-up budget (short ones never do: measured).
  for (let i = 0; i < 10; i++) probe(2_000_000, i);
  let best = 0;
  for (let round = 0; round < 20; round++) {
    const t0 = performance.now();
    const sink = probe(ITERATIONS, round + 1);
    const seconds = (performance.now() - t0) / 1000;
    if (Number.isNaN(sink)) throw new Error("peak probe: NaN");
    best = Math.max(best, ITERATIONS * flopPerIteration / seconds / 1e9);
  }
  return best;
}

/** The mul+add peak (strict build). */
export async function wasmSimdPeakGflops(): Promise<number> {
  const k = (await instantiateKernel("peak_probe", "strict")).exports as {
    mulAdd: Probe;
    FLOP_PER_ITERATION: WebAssembly.Global;
  };
  return bestGflops(k.mulAdd, Number(k.FLOP_PER_ITERATION.value));
}

/** The fused multiply-add peak (FMA build), or null without relaxed SIMD. */
export async function wasmFmaPeakGflops(): Promise<number | null> {
  if (!relaxedSimdAvailable()) return null;
  const k = (await instantiateKernel("peak_probe", "fma")).exports as {
    fma: Probe;
    FMA_FLOP_PER_ITERATION: WebAssembly.Global;
  };
  return bestGflops(k.fma, Number(k.FMA_FLOP_PER_ITERATION.value));
}

if (import.meta.main) {
  console.log(JSON.stringify({
    peak_gflops: await wasmSimdPeakGflops(),
    fma_peak_gflops: await wasmFmaPeakGflops(),
  }));
}
