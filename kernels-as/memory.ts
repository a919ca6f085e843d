// @ts-nocheck: AssemblyScript source (usize, heap, memory): asc type-checks it, not tsc.
/** Memory helpers the kernels share. */

/** A zero-filled block from the stub runtime's heap (kernels allocate once, in setup()). */
export function allocZeroed(bytes: i32): usize {
  const p = heap.alloc(<usize> bytes);
  memory.fill(p, 0, <usize> bytes);
  return p;
}
