// @ts-nocheck: AssemblyScript source (u32, usize, heap): asc type-checks it, not tsc.
/**
 * Build entry that exposes the wasm Philox to the tests (test/rng_wasm_test.ts), so the AS
 * stream is compared word for word with server/rng/philox.ts without going through a kernel.
 */
export { normalsFill, philoxFill, uniformIndex } from "./philox.ts";

/** Scratch memory for the fills (stub runtime: a bump allocator that grows memory). */
export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}
