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
    a = madd(v128.load(row + k), v128.load(v + k), a);
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
    a0 = madd(v128.load(r0 + k), vk, a0);
    a1 = madd(v128.load(r1 + k), vk, a1);
    a2 = madd(v128.load(r2 + k), vk, a2);
    a3 = madd(v128.load(r3 + k), vk, a3);
  }
  let sums = f32x4.splat(hsum(a0));
  sums = f32x4.replace_lane(sums, 1, hsum(a1));
  sums = f32x4.replace_lane(sums, 2, hsum(a2));
  return f32x4.replace_lane(sums, 3, hsum(a3));
}

/**
 * dot4 for the eight rows r0, r0 + rowBytes, …: their dot products with v stored as two f32x4
 * at out. Eight independent accumulators: enough to cover a fused multiply-add's latency on
 * two pipes; each row's sum is in dot4's order, so the numbers are dot4's.
 */
export function dot8(r0: usize, rowBytes: usize, v: usize, bytes: usize, out: usize): void {
  const r1 = r0 + rowBytes, r2 = r1 + rowBytes, r3 = r2 + rowBytes;
  const r4 = r3 + rowBytes, r5 = r4 + rowBytes, r6 = r5 + rowBytes, r7 = r6 + rowBytes;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  for (let k: usize = 0; k < bytes; k += 16) {
    const vk = v128.load(v + k);
    a0 = madd(v128.load(r0 + k), vk, a0);
    a1 = madd(v128.load(r1 + k), vk, a1);
    a2 = madd(v128.load(r2 + k), vk, a2);
    a3 = madd(v128.load(r3 + k), vk, a3);
    a4 = madd(v128.load(r4 + k), vk, a4);
    a5 = madd(v128.load(r5 + k), vk, a5);
    a6 = madd(v128.load(r6 + k), vk, a6);
    a7 = madd(v128.load(r7 + k), vk, a7);
  }
  let s = f32x4.splat(hsum(a0));
  s = f32x4.replace_lane(s, 1, hsum(a1));
  s = f32x4.replace_lane(s, 2, hsum(a2));
  v128.store(out, f32x4.replace_lane(s, 3, hsum(a3)));
  s = f32x4.splat(hsum(a4));
  s = f32x4.replace_lane(s, 1, hsum(a5));
  s = f32x4.replace_lane(s, 2, hsum(a6));
  v128.store(out, f32x4.replace_lane(s, 3, hsum(a7)), 16);
}

/**
 * a·b + c per lane. In the FMA build (asc --enable relaxed-simd, build/wasm/*.fma.wasm) this
 * is f32x4.relaxed_madd, which V8 lowers to one fused multiply-add (rounded once) where the
 * CPU has FMA and to mul then add (rounded twice) where it has not; in the strict build it is
 * exactly the mul then add the kernels always did, operands in the same order.
 */
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** c − a·b per lane: relaxed_nmadd in the FMA build, mul then sub in the strict one. */
export function nmadd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_nmadd(a, b, c);
  return f32x4.sub(c, f32x4.mul(a, b));
}
