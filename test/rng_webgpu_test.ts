/**
 * kernels-wgsl/philox.wgsl against server/rng/philox.ts: the words, uniforms, indices and signs
 * must be bit-identical; Box–Muller normals agree within the error WGSL allows its builtins.
 * Needs a WebGPU adapter (a software one is enough); without one these tests fail and say
 * how to get one.
 */
import assert from "node:assert/strict";
import {
  boxMuller,
  philoxBlock,
  rademacher,
  uniform24,
  uniformIndex,
} from "../server/rng/philox.ts";
import { getGpu } from "../server/engine/webgpu/device.ts";
import { type ProbeRequest, runRngProbe } from "../server/engine/webgpu/rng_probe.ts";

const EDGE_SEEDS = [0, 1, 123, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF];
const EDGE_REPLICAS = [0, 1, 255, 0xFFFFFFFF];
const EDGE_STEPS = [0, 1, 299999, 0x80000000, 0xFFFFFFFF];
const EDGE_STREAMS = [0, 1, 0xFFFFFFFF];
const EDGE_BLOCKS = [0, 1, 24, 0xFFFFFFFF];
const EDGE_N = [1, 40, 100, 0x80000000, 0xFFFFFFFF];

/** Every combination of edge values, plus keys from a fixed LCG (no Philox involved). */
function requests(random: number): ProbeRequest[] {
  const out: ProbeRequest[] = [];
  let i = 0;
  for (const seed of EDGE_SEEDS) {
    for (const replica of EDGE_REPLICAS) {
      for (const step of EDGE_STEPS) {
        for (const stream of EDGE_STREAMS) {
          for (const block of EDGE_BLOCKS) {
            out.push({ seed, replica, step, stream, block, n: EDGE_N[i++ % EDGE_N.length] });
          }
        }
      }
    }
  }
  let x = 12345;
  const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  for (let q = 0; q < random; q++) {
    out.push({
      seed: next(),
      replica: next() & 0xFFFF,
      step: next(),
      stream: next() & 3,
      block: next() & 63,
      n: 1 + (next() % 5000),
    });
  }
  return out;
}

const SAMPLES = requests(20000);

async function probe() {
  await getGpu(); // fails with instructions when there is no adapter
  return await runRngProbe(SAMPLES);
}

/**
 * Largest |z_gpu − z_ts| WGSL permits for one Box–Muller output, from the WGSL spec's
 * accuracy of f32 builtins (§ "Floating Point Accuracy"):
 *   u1, u2 are the f32 roundings of the TS uniforms (|Δu| ≤ 2^-25);
 *   log: absolute 2^-21 on [0.5, 2], else 3 ULP; sqrt: a few ULP (we allow 8);
 *   cos/sin: absolute 2^-11 on [-π, π] (the kernel reduces θ into that range);
 *   θ = 2π·u2 in f32: ≤ 2π·2^-25 + π·2^-22.
 * cos/sin dominate: up to r·2^-11 ≈ 2.9e-3 at the largest radius (r ≈ 5.9). llvmpipe is
 * far better in practice (the measured maximum is printed), but the test should hold on any
 * conforming adapter, and a wrong formula (swapped words, sin for cos, wrong bits) is off by
 * O(1), which this still catches.
 */
function normalTolerance(a: number, b: number, cosine: boolean): number {
  const u1 = uniform24(a);
  const L = -2 * Math.log(u1);
  const r = Math.sqrt(L);
  const eLog = 2 ** -21 + 2 ** -24 / u1 + 3 * 2 ** -23 * Math.abs(Math.log(u1));
  const eL = 2 * eLog;
  const dr = Math.min(r > 0 ? eL / (2 * r) : Infinity, Math.sqrt(eL)) + 8 * 2 ** -24 * r;
  const theta = 2 * Math.PI * uniform24(b);
  const trig = cosine ? Math.abs(Math.cos(theta)) : Math.abs(Math.sin(theta));
  const dTheta = 2 * Math.PI * 2 ** -25 + Math.PI * 2 ** -22;
  return trig * dr + (r + dr) * (2 ** -11 + dTheta) + 2 ** -23 * r;
}

Deno.test("WGSL Philox4x32-10 words, uniforms, indices and signs equal the TS bit for bit", async () => {
  const got = await probe();
  const words = new Uint32Array(4);
  SAMPLES.forEach((q, i) => {
    philoxBlock(q.seed, q.replica, q.step, q.stream, q.block, words);
    for (let k = 0; k < 4; k++) {
      const at = 4 * i + k;
      const gpu = [got.words[at], got.uniforms[at], got.indices[at], got.signs[at]];
      const ts = [
        words[k],
        Math.fround(uniform24(words[k])), // the WGSL computes it in float32
        uniformIndex(words[k], q.n),
        rademacher(words[k]),
      ];
      assert.deepEqual(gpu, ts, `request ${JSON.stringify(q)}, word ${k}: gpu vs ts`);
    }
  });
});

Deno.test("WGSL Box–Muller normals match the TS within WGSL's builtin accuracy", async () => {
  const got = await probe();
  const words = new Uint32Array(4);
  let maxErr = 0, worst = 0;
  SAMPLES.forEach((q, i) => {
    philoxBlock(q.seed, q.replica, q.step, q.stream, q.block, words);
    const z = [...boxMuller(words[0], words[1]), ...boxMuller(words[2], words[3])];
    for (let k = 0; k < 4; k++) {
      const pair = k < 2 ? 0 : 2;
      const err = Math.abs(got.normals[4 * i + k] - z[k]);
      const tol = normalTolerance(words[pair], words[pair + 1], k % 2 === 0);
      maxErr = Math.max(maxErr, err);
      worst = Math.max(worst, err / tol);
      assert.ok(
        err <= tol,
        `request ${JSON.stringify(q)} normal ${k}: gpu ${got.normals[4 * i + k]} vs ts ${
          z[k]
        } (|Δ| ${err} > ${tol})`,
      );
    }
  });
  console.log(
    `normals: ${SAMPLES.length * 4} compared, max |Δ| ${maxErr.toExponential(2)}, ` +
      `worst fraction of the allowed error ${worst.toFixed(4)}`,
  );
});
