/**
 * The AssemblyScript Philox (kernels-as/philox.ts, through the rng_probe.wasm entry) against
 * the TypeScript one (server/rng/philox.ts): identical uint32 words for every key, including
 * the 0 and 0xFFFFFFFF edges of each key component, and normals within float32 accuracy.
 */
import assert from "node:assert/strict";
import { ensureWasm, WASM_OUT_DIR } from "../server/build_wasm.ts";
import { DATA_REPLICA, normals, philoxBlock, uniformIndex } from "../server/rng/philox.ts";

interface RngProbe {
  memory: WebAssembly.Memory;
  alloc(bytes: number): number;
  philoxFill(
    seed: number,
    replica: number,
    step: number,
    stream: number,
    firstBlock: number,
    blocks: number,
    out: number,
  ): void;
  normalsFill(
    seed: number,
    replica: number,
    step: number,
    stream: number,
    count: number,
    out: number,
  ): void;
  uniformIndex(u: number, n: number): number;
}

await ensureWasm();
const bytes = await Deno.readFile(new URL("rng_probe.wasm", WASM_OUT_DIR));
const { instance } = await WebAssembly.instantiate(bytes, {
  env: {
    abort() {
      throw new Error("rng_probe aborted");
    },
  },
});
const probe = instance.exports as unknown as RngProbe;
const SCRATCH_WORDS = 1 << 16;
const scratch = probe.alloc(SCRATCH_WORDS * 4);
const words = (count: number) => new Uint32Array(probe.memory.buffer, scratch, count);
const floats = (count: number) => new Float32Array(probe.memory.buffer, scratch, count);

const EDGES = [0, 1, 2, 123, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF];

/** Deterministic uint32 keys beyond the edges (xorshift32, so the test is reproducible). */
function pseudoRandomWords(count: number, state = 0x12345678): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out.push(state >>> 0);
  }
  return out;
}

/** Compares `blocks` blocks from firstBlock; returns how many words were compared. */
function compareBlocks(
  seed: number,
  replica: number,
  step: number,
  stream: number,
  firstBlock: number,
  blocks: number,
): number {
  probe.philoxFill(seed, replica, step, stream, firstBlock, blocks, scratch);
  const got = words(4 * blocks);
  for (let b = 0; b < blocks; b++) {
    const block = (firstBlock + b) >>> 0; // the block counter wraps as a uint32
    const want = philoxBlock(seed, replica, step, stream, block);
    for (let w = 0; w < 4; w++) {
      if (got[4 * b + w] !== want[w]) {
        assert.fail(
          `word ${w} of key (seed ${seed}, replica ${replica}, step ${step}, stream ${stream}, ` +
            `block ${block}): wasm ${got[4 * b + w]} != ts ${want[w]}`,
        );
      }
    }
  }
  return 4 * blocks;
}

Deno.test("wasm Philox words equal the TS words on every edge-value key", () => {
  let compared = 0;
  for (const seed of EDGES) {
    for (const replica of [...EDGES, DATA_REPLICA]) {
      for (const step of [0, 1, 299999, 0x80000000, 0xFFFFFFFF]) {
        for (const stream of [0, 1, 0xFFFFFFFF]) {
          for (const firstBlock of [0, 0xFFFFFFFE]) {
            compared += compareBlocks(seed, replica, step, stream, firstBlock, 4);
          }
        }
      }
    }
  }
  assert.equal(compared, 8 * 9 * 5 * 3 * 2 * 16);
});

Deno.test("wasm Philox words equal the TS words on pseudo-random keys and long streams", () => {
  const keys = pseudoRandomWords(5 * 500);
  for (let i = 0; i < keys.length; i += 5) {
    compareBlocks(keys[i], keys[i + 1], keys[i + 2], keys[i + 3] & 7, keys[i + 4], 3);
  }
  compareBlocks(123, DATA_REPLICA, 7, 0, 0, SCRATCH_WORDS / 4); // a data-generation stream
  // Not vacuous: the stream is not constant and depends on every key component.
  const base = [...philoxBlock(1, 2, 3, 4, 5)];
  assert.notDeepEqual(base, [0, 0, 0, 0]);
  for (const other of [[0, 2, 3, 4, 5], [1, 0, 3, 4, 5], [1, 2, 0, 4, 5], [1, 2, 3, 0, 5]]) {
    probe.philoxFill(other[0], other[1], other[2], other[3], other[4], 1, scratch);
    assert.notDeepEqual([...words(4)], base);
  }
});

Deno.test("wasm uniformIndex is the exact high word of u·n", () => {
  const us = [...EDGES, ...pseudoRandomWords(200, 99)];
  for (const u of us) {
    for (const n of [1, 2, 3, 40, 100, 4096, 0x7FFFFFFF, 0xFFFFFFFF]) {
      assert.equal(probe.uniformIndex(u, n) >>> 0, uniformIndex(u, n), `u=${u} n=${n}`);
    }
  }
});

/**
 * Box–Muller in float32 (logf/log1pf, sincosf; the angle taken from the exact uniform) vs
 * the float64 TS: the error is a few float32 ulps of r ≤ 5.9 and of the angle ≤ 2π, about
 * 1e-6 absolute (7.8e-7 measured over 8e5 normals); 1e-5 leaves a margin yet catches any
 * wrong word, pairing or sign (those move a normal by O(1)).
 */
const NORMAL_TOLERANCE = 1e-5;

function compareNormals(
  seed: number,
  replica: number,
  step: number,
  stream: number,
  count: number,
) {
  probe.normalsFill(seed, replica, step, stream, count, scratch);
  const got = floats(count);
  const want = normals(seed, replica, step, stream, count);
  let worst = 0;
  for (let k = 0; k < count; k++) {
    const err = Math.abs(got[k] - want[k]);
    if (!(err <= NORMAL_TOLERANCE)) {
      assert.fail(
        `normal ${k} of (seed ${seed}, replica ${replica}, step ${step}, stream ${stream}): ` +
          `wasm ${got[k]} vs ts ${want[k]}`,
      );
    }
    worst = Math.max(worst, err);
  }
  return worst;
}

Deno.test("wasm normals agree with the TS normals to 1e-5 absolute", () => {
  for (const seed of EDGES) {
    for (const replica of [0, 5, DATA_REPLICA]) compareNormals(seed, replica, 17, 1, 103);
  }
  const keys = pseudoRandomWords(3 * 40, 7);
  for (let i = 0; i < keys.length; i += 3) {
    compareNormals(keys[i], keys[i + 1], keys[i + 2], 1, 2500);
  }
  compareNormals(123, DATA_REPLICA, 0, 0, SCRATCH_WORDS); // 65536 normals of one stream
});

Deno.test("wasm normalsFill writes exactly `count` values (tails of a block)", () => {
  for (const count of [1, 2, 3, 5, 6, 7]) {
    const mem = floats(12);
    mem.fill(12345);
    probe.normalsFill(9, 1, 2, 1, count, scratch);
    for (let k = count; k < 12; k++) assert.equal(floats(12)[k], 12345, `count ${count}`);
    compareNormals(9, 1, 2, 1, count);
  }
});
