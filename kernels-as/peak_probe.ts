// @ts-nocheck: AssemblyScript source (v128, f32x4): asc type-checks it, not tsc.
import { madd } from "./simd.ts";

/**
 * The machine's Wasm SIMD128 float32 mul+add peak on one core, for the fraction-of-peak the
 * bench reports (test/bench_peak.ts): six independent f32x4.mul chains and six independent
 * f32x4.add chains, enough to cover both ops' latency on two pipes each, with nothing loaded
 * from memory. 48 FLOP per iteration (each mul and each add of a lane counts one, as the
 * kernels' FLOP counts do).
 */
export const FLOP_PER_ITERATION = 48;

/**
 * The fused multiply-add peak (the FMA build, build/wasm/peak_probe.fma.wasm, where madd is
 * f32x4.relaxed_madd): twelve independent madd chains, enough to cover a 4-cycle FMA latency
 * on two pipes with room to spare, nothing loaded from memory. 96 FLOP per iteration (an FMA
 * of a lane counts two, as the kernels' FLOP counts do). In the strict build the same loop
 * is mul then add per chain, latency-bound: only the FMA build's figure is a peak.
 */
export const FMA_FLOP_PER_ITERATION = 96;

export function fma(iterations: i32, seed: f32): f32 {
  const m = f32x4.splat(0.99999994);
  const c = f32x4.splat(seed * 1e-9);
  let a0 = f32x4.splat(seed), a1 = f32x4.splat(seed + 1), a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3), a4 = f32x4.splat(seed + 4), a5 = f32x4.splat(seed + 5);
  let b0 = f32x4.splat(seed + 6), b1 = f32x4.splat(seed + 7), b2 = f32x4.splat(seed + 8);
  let b3 = f32x4.splat(seed + 9), b4 = f32x4.splat(seed + 10), b5 = f32x4.splat(seed + 11);
  for (let i = 0; i < iterations; i++) {
    a0 = madd(a0, m, c);
    a1 = madd(a1, m, c);
    a2 = madd(a2, m, c);
    a3 = madd(a3, m, c);
    a4 = madd(a4, m, c);
    a5 = madd(a5, m, c);
    b0 = madd(b0, m, c);
    b1 = madd(b1, m, c);
    b2 = madd(b2, m, c);
    b3 = madd(b3, m, c);
    b4 = madd(b4, m, c);
    b5 = madd(b5, m, c);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)),
    f32x4.add(
      f32x4.add(a4, a5),
      f32x4.add(f32x4.add(b0, b1), f32x4.add(f32x4.add(b2, b3), f32x4.add(b4, b5))),
    ),
  );
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 3);
}

export function mulAdd(iterations: i32, seed: f32): f32 {
  const m = f32x4.splat(0.99999994);
  const c = f32x4.splat(seed * 1e-9);
  let a0 = f32x4.splat(seed), a1 = f32x4.splat(seed + 1), a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3), a4 = f32x4.splat(seed + 4), a5 = f32x4.splat(seed + 5);
  let b0 = f32x4.splat(seed), b1 = f32x4.splat(seed + 1), b2 = f32x4.splat(seed + 2);
  let b3 = f32x4.splat(seed + 3), b4 = f32x4.splat(seed + 4), b5 = f32x4.splat(seed + 5);
  for (let i = 0; i < iterations; i++) {
    a0 = f32x4.add(a0, c);
    b0 = f32x4.mul(b0, m);
    a1 = f32x4.add(a1, c);
    b1 = f32x4.mul(b1, m);
    a2 = f32x4.add(a2, c);
    b2 = f32x4.mul(b2, m);
    a3 = f32x4.add(a3, c);
    b3 = f32x4.mul(b3, m);
    a4 = f32x4.add(a4, c);
    b4 = f32x4.mul(b4, m);
    a5 = f32x4.add(a5, c);
    b5 = f32x4.mul(b5, m);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)),
    f32x4.add(
      f32x4.add(a4, a5),
      f32x4.add(f32x4.add(b0, b1), f32x4.add(f32x4.add(b2, b3), f32x4.add(b4, b5))),
    ),
  );
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 3);
}
