/**
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11),
 * the counter-based generator every backend shares. The TypeScript, AssemblyScript
 * (kernels-as/philox.ts) and WGSL (kernels-wgsl/philox.wgsl) versions must produce
 * identical uint32 streams; test/rng_test.ts checks that.
 *
 * Keying convention of the lab (one place, used by every experiment):
 *   key     = (seed, replica)                 replica = DATA_REPLICA for data generation
 *   counter = (step, stream, block, 0)        block numbers successive groups of 4 words
 * so a draw is addressed by (seed, replica, step, stream, block) and never depends on
 * how many steps a backend advances per call.
 */

export const PHILOX_M0 = 0xD2511F53;
export const PHILOX_M1 = 0xCD9E8D57;
export const PHILOX_W0 = 0x9E3779B9;
export const PHILOX_W1 = 0xBB67AE85;

/** Replica slot reserved for data generation, so data never shares a stream with noise. */
export const DATA_REPLICA = 0xFFFFFFFF;

/**
 * High 32 bits of the 64-bit product of two uint32, with 16-bit halves, written exactly as
 * the WGSL version must (WGSL has no 64-bit integers), so the three agree by construction.
 */
export function mulhi32(a: number, b: number): number {
  const al = a & 0xFFFF, ah = a >>> 16;
  const bl = b & 0xFFFF, bh = b >>> 16;
  const albl = (al * bl) >>> 0;
  const t = (ah * bl + (albl >>> 16)) >>> 0;
  const t2 = (al * bh + (t & 0xFFFF)) >>> 0;
  return (ah * bh + (t >>> 16) + (t2 >>> 16)) >>> 0;
}

/** Philox4x32 with 10 rounds; writes the 4 output words into `out` and returns it. */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  c0 >>>= 0, c1 >>>= 0, c2 >>>= 0, c3 >>>= 0, k0 >>>= 0, k1 >>>= 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, c0), lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, c2), lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
  return out;
}

/** Four words addressed by the lab's keying convention. */
export function philoxBlock(
  seed: number,
  replica: number,
  step: number,
  stream: number,
  block: number,
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  return philox4x32(step, stream, block, 0, seed, replica, out);
}

/**
 * Uniform in (0, 1) from the top 24 bits: ((u >> 8) + 0.5) / 2^24, never 0 or 1 (safe for
 * log). Float32 kernels compute the same expression; it is exact in float64 and within half
 * a float32 ulp in the kernels (k + 0.5 needs 25 bits for k ≥ 2^23), far below the
 * transcendental rounding of the normal transform.
 */
export function uniform24(u: number): number {
  return ((u >>> 8) + 0.5) * (1 / 16777216);
}

/** Uniform integer in [0, n) as the high word of u·n: exact integer arithmetic everywhere. */
export function uniformIndex(u: number, n: number): number {
  return mulhi32(u >>> 0, n >>> 0);
}

/** Rademacher sign from the lowest bit: +1 or -1. */
export function rademacher(u: number): number {
  return (u & 1) === 0 ? 1 : -1;
}

/**
 * Box–Muller on two words: returns [r·cos(2πu2), r·sin(2πu2)] with r = sqrt(-2 ln u1).
 * Kernels use the same formula in float32, so normals agree up to transcendental rounding.
 */
export function boxMuller(a: number, b: number): [number, number] {
  const u1 = uniform24(a), u2 = uniform24(b);
  const r = Math.sqrt(-2 * Math.log(u1));
  const theta = 2 * Math.PI * u2;
  return [r * Math.cos(theta), r * Math.sin(theta)];
}

/**
 * `count` standard normals for one (seed, replica, step, stream): block b yields normals
 * 4b..4b+3 as boxMuller(w0, w1) then boxMuller(w2, w3).
 */
export function normals(
  seed: number,
  replica: number,
  step: number,
  stream: number,
  count: number,
  out: Float64Array = new Float64Array(count),
): Float64Array {
  const words = new Uint32Array(4);
  for (let block = 0; block * 4 < count; block++) {
    philoxBlock(seed, replica, step, stream, block, words);
    const [z0, z1] = boxMuller(words[0], words[1]);
    const [z2, z3] = boxMuller(words[2], words[3]);
    const base = block * 4;
    if (base < count) out[base] = z0;
    if (base + 1 < count) out[base + 1] = z1;
    if (base + 2 < count) out[base + 2] = z2;
    if (base + 3 < count) out[base + 3] = z3;
  }
  return out;
}

/**
 * Normal number `index` of normals(seed, replica, step, stream, ·), alone: the same value
 * without drawing the ones before it (the P/Q Q-plane path draws 2 columns of a d-wide row).
 */
export function normalAt(
  seed: number,
  replica: number,
  step: number,
  stream: number,
  index: number,
  words: Uint32Array = new Uint32Array(4),
): number {
  philoxBlock(seed, replica, step, stream, index >>> 2, words);
  const pair = index & 2;
  return boxMuller(words[pair], words[pair + 1])[index & 1];
}

/** First word of a block: the usual single draw of a stream. */
export function word(
  seed: number,
  replica: number,
  step: number,
  stream: number,
  index = 0,
): number {
  const words = philoxBlock(seed, replica, step, stream, index >>> 2);
  return words[index & 3];
}
