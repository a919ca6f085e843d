// @ts-nocheck: AssemblyScript source (u32, f32, load<T>, Mathf): asc type-checks it, not tsc.
/**
 * Philox4x32-10 for the wasm kernels: the same uint32 stream as server/rng/philox.ts (the
 * keying convention is documented there: key = (seed, replica), counter = (step, stream,
 * block, 0)), plus the lab's decoders of words into uniforms, indices, signs and normals.
 *
 * This is a shared helper module, not a build entry: kernels import it, and rng_probe.ts
 * re-exports the fills below so test/rng_wasm_test.ts can compare streams with the TS.
 * Results come back in module globals (w0..w3, z0, z1) rather than memory: wasm globals
 * are registers to V8, and a kernel draws one block per step in its hot loop.
 */

const M0: u64 = 0xD2511F53;
const M1: u64 = 0xCD9E8D57;
const W0: u32 = 0x9E3779B9;
const W1: u32 = 0xBB67AE85;

/** The four output words of the last philoxBlock() call. */
export let w0: u32 = 0;
export let w1: u32 = 0;
export let w2: u32 = 0;
export let w3: u32 = 0;

/** The two normals of the last boxMuller() call. */
export let z0: f32 = 0;
export let z1: f32 = 0;

/**
 * Four words for (seed, replica, step, stream, block). The 64-bit product gives the same
 * high word as the TS mulhi32 with 16-bit halves: both are exact.
 */
export function philoxBlock(seed: u32, replica: u32, step: u32, stream: u32, block: u32): void {
  let c0 = step, c1 = stream, c2 = block, c3: u32 = 0;
  let k0 = seed, k1 = replica;
  for (let round = 0; round < 10; round++) {
    const p0 = M0 * <u64> c0;
    const p1 = M1 * <u64> c2;
    const n0 = <u32> (p1 >>> 32) ^ c1 ^ k0;
    const n2 = <u32> (p0 >>> 32) ^ c3 ^ k1;
    c1 = <u32> p1;
    c3 = <u32> p0;
    c0 = n0;
    c2 = n2;
    // The TS bumps the key before rounds 1..9; bumping after each round is the same.
    k0 += W0;
    k1 += W1;
  }
  w0 = c0;
  w1 = c1;
  w2 = c2;
  w3 = c3;
}

/** Uniform integer in [0, n): the high word of u·n, exact integer arithmetic as in the TS. */
export function uniformIndex(u: u32, n: u32): u32 {
  return <u32> ((<u64> u * <u64> n) >>> 32);
}

/** Rademacher sign from the lowest bit: +1 or -1. */
export function rademacher(u: u32): f32 {
  return (u & 1) == 0 ? 1 : -1;
}

const TWO_POW_M24: f32 = 1.0 / 16777216.0;

/** ((u >> 8) + 0.5) / 2^24 rounded to float32 (exact below 0.5, within 2^-25 above). */
export function uniform24(u: u32): f32 {
  return (<f32> (u >>> 8) + 0.5) * TWO_POW_M24;
}

/**
 * ln(uniform24(u)) to float32 accuracy. Above 0.5 the float32 uniform is rounded (25
 * significant bits), and near 1 that rounding would dominate the small r = sqrt(-2 ln u);
 * there 1 − u = ((2^24 − 1 − (u >> 8)) + 0.5) / 2^24 is exact, so we take log1p(−(1 − u)).
 */
function logUniform24(u: u32): f32 {
  const k = u >>> 8;
  if (k < 0x800000) return Mathf.log((<f32> k + 0.5) * TWO_POW_M24);
  return Mathf.log1p(-((<f32> (<u32> 0xFFFFFF - k) + 0.5) * TWO_POW_M24));
}

/**
 * Box–Muller on two words, as the TS: r = sqrt(−2 ln u1), z0 = r cos 2πu2, z1 = r sin 2πu2.
 * For u2 ≥ 1/2 we use the exact m = 1 − u2 and cos 2π(1−m) = cos 2πm, sin 2π(1−m) = −sin 2πm,
 * so the angle carries no rounding from u2. Results in z0, z1; agrees with the float64 TS to
 * about 1e-6 absolute.
 */
export function boxMuller(a: u32, b: u32): void {
  const r = Mathf.sqrt(-2 * logUniform24(a));
  const k = b >>> 8;
  const upper = k >= 0x800000;
  const m = upper ? <f32> (<u32> 0xFFFFFF - k) + 0.5 : <f32> k + 0.5;
  Mathf.sincos(<f32> (2 * Math.PI) * (m * TWO_POW_M24));
  z0 = r * Mathf.sincos_cos;
  z1 = upper ? -r * Mathf.sincos_sin : r * Mathf.sincos_sin;
}

/** Normal `index` of fillNormals(seed, replica, step, stream, ·), alone (the same float32). */
export function normalAt(seed: u32, replica: u32, step: u32, stream: u32, index: u32): f32 {
  philoxBlock(seed, replica, step, stream, index >>> 2);
  if ((index & 2) == 0) boxMuller(w0, w1);
  else boxMuller(w2, w3);
  return (index & 1) == 0 ? z0 : z1;
}

/**
 * `count` standard normals for (seed, replica, step, stream) into out[0..count) as float32:
 * block b gives normals 4b..4b+3 as boxMuller(w0, w1), boxMuller(w2, w3), as the TS normals().
 */
export function fillNormals(
  seed: u32,
  replica: u32,
  step: u32,
  stream: u32,
  count: i32,
  out: usize,
): void {
  for (let base = 0; base < count; base += 4) {
    philoxBlock(seed, replica, step, stream, <u32> (base >>> 2));
    boxMuller(w0, w1);
    const p = out + (<usize> base << 2);
    store<f32>(p, z0);
    if (base + 1 < count) store<f32>(p, z1, 4);
    if (base + 2 < count) {
      boxMuller(w2, w3);
      store<f32>(p, z0, 8);
      if (base + 3 < count) store<f32>(p, z1, 12);
    }
  }
}

/** Raw words of `blocks` consecutive blocks from firstBlock (wrapping as uint32) into out. */
export function philoxFill(
  seed: u32,
  replica: u32,
  step: u32,
  stream: u32,
  firstBlock: u32,
  blocks: i32,
  out: usize,
): void {
  for (let b = 0; b < blocks; b++) {
    philoxBlock(seed, replica, step, stream, firstBlock + <u32> b);
    const p = out + (<usize> b << 4);
    store<u32>(p, w0);
    store<u32>(p, w1, 4);
    store<u32>(p, w2, 8);
    store<u32>(p, w3, 12);
  }
}

/** `count` normals (float32) for the key, for the stream comparison tests. */
export function normalsFill(
  seed: u32,
  replica: u32,
  step: u32,
  stream: u32,
  count: i32,
  out: usize,
): void {
  fillNormals(seed, replica, step, stream, count, out);
}
