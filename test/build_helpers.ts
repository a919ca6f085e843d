/** Lets a test file run standalone: (re)builds the Wasm kernels if `deno task build` has not. */
import { ensureWasm } from "../server/build_wasm.ts";

export function ensureWasmBuilt(): Promise<void> {
  return ensureWasm();
}
