// @ts-nocheck: AssemblyScript source (v128, f32x4, usize): asc type-checks it, not tsc.
/**
 * Wasm-SIMD pieces the kernels share: the horizontal sum and row·vector dot products over
 * float32 rows padded to a multiple of 4 lanes. Small enough for binaryen's -O3 to inline
 * into the hot loops; the summation order is fixed here, once, for every kernel.
 */

/** (l0 + l1) + (l2 + l3) of an f32x4. */
export function hsum(a: v128): f32 {
  return (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) +
    (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3));
}

/** <row, v> over `bytes` bytes (a multiple of 16). */
export function dot(row: usize, v: usize, bytes: usize): f32 {
  let a = f32x4.splat(0);
  for (let k: usize = 0; k < bytes; k += 16) {
    a = f32x4.add(a, f32x4.mul(v128.load(row + k), v128.load(v + k)));
  }
  return hsum(a);
}

/**
 * <row_j, v> for the four rows r0, r0 + rowBytes, … as the lanes of one f32x4: four
 * independent accumulators hide the add latency and each v vector is loaded once.
 */
export function dot4(r0: usize, rowBytes: usize, v: usize, bytes: usize): v128 {
  const r1 = r0 + rowBytes;
  const r2 = r1 + rowBytes;
  const r3 = r2 + rowBytes;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  for (let k: usize = 0; k < bytes; k += 16) {
    const vk = v128.load(v + k);
    a0 = f32x4.add(a0, f32x4.mul(v128.load(r0 + k), vk));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(r1 + k), vk));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(r2 + k), vk));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(r3 + k), vk));
  }
  let sums = f32x4.splat(hsum(a0));
  sums = f32x4.replace_lane(sums, 1, hsum(a1));
  sums = f32x4.replace_lane(sums, 2, hsum(a2));
  return f32x4.replace_lane(sums, 3, hsum(a3));
}
