// Philox4x32-10 and the lab's draw transforms, the WGSL twin of server/rng/philox.ts.
// The host prepends this text to every kernel that draws random numbers (WGSL has no
// imports). Keying convention: key = (seed, replica), counter = (step, stream, block, 0);
// block b gives words 4b..4b+3. test/rng_webgpu_test.ts checks the words bit for bit.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// High 32 bits of the 64-bit product a*b. WGSL has no u64, so the product is assembled from
// 16-bit halves, exactly as mulhi32 in the TS (no partial sum can exceed 2^32 - 1).
fn mulhi32(a: u32, b: u32) -> u32 {
  let al = a & 0xFFFFu;
  let ah = a >> 16u;
  let bl = b & 0xFFFFu;
  let bh = b >> 16u;
  let albl = al * bl;
  let t = ah * bl + (albl >> 16u);
  let t2 = al * bh + (t & 0xFFFFu);
  return ah * bh + (t >> 16u) + (t2 >> 16u);
}

// Ten rounds; u32 multiplication wraps in WGSL, which gives the low words.
fn philox4x32(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    if (round > 0u) {
      k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
    }
    let hi0 = mulhi32(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = mulhi32(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

// Four words addressed by (seed, replica, step, stream, block). `step` is the step modulo
// 2^32, as the TS's `>>> 0` makes it.
fn philox_block(seed: u32, replica: u32, step: u32, stream: u32, block: u32) -> vec4<u32> {
  return philox4x32(vec4<u32>(step, stream, block, 0u), vec2<u32>(seed, replica));
}

// ((u >> 8) + 0.5) / 2^24 rounded once to f32: the float32 rounding of the TS value. (It is
// exact for u < 2^31; above, 2m+1 needs 25 significant bits and rounds to even, and the top
// value rounds to 1.0, which only makes a Box–Muller radius 0.)
fn uniform24(u: u32) -> f32 {
  return (f32(u >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// Uniform integer in [0, n): high word of u*n, exact integer arithmetic as in the TS.
fn uniform_index(u: u32, n: u32) -> u32 {
  return mulhi32(u, n);
}

// +1 or -1 from the lowest bit.
fn rademacher(u: u32) -> f32 {
  return select(-1.0, 1.0, (u & 1u) == 0u);
}

const TWO_PI: f32 = 6.283185307179586;

// Box–Muller on two words: (r cos θ, r sin θ), r = sqrt(-2 ln u1), θ = 2π u2. The angle is
// taken in [-π, π) (2π(u2 - 1) for u2 >= 1/2; u2 - 1 is exact there) because WGSL only
// bounds the error of cos/sin inside [-π, π]; the cosine and sine are unchanged.
fn box_muller(a: u32, b: u32) -> vec2<f32> {
  let u1 = uniform24(a);
  let u2 = uniform24(b);
  let r = sqrt(-2.0 * log(u1));
  let theta = TWO_PI * select(u2, u2 - 1.0, u2 >= 0.5);
  return vec2<f32>(r * cos(theta), r * sin(theta));
}

// Normals 4b..4b+3 of one (seed, replica, step, stream): Box–Muller on (w0, w1), (w2, w3).
fn normals4(seed: u32, replica: u32, step: u32, stream: u32, block: u32) -> vec4<f32> {
  let w = philox_block(seed, replica, step, stream, block);
  return vec4<f32>(box_muller(w.x, w.y), box_muller(w.z, w.w));
}
