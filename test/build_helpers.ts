/** Lets a test file run standalone: builds the Wasm kernels if `deno task build` has not. */
import { buildWasm } from "../server/build_wasm.ts";

let built: Promise<void> | undefined;

export function ensureWasmBuilt(): Promise<void> {
  built ??= (async () => {
    try {
      await Deno.stat(new URL("../build/wasm/shape_matters.wasm", import.meta.url));
    } catch {
      await buildWasm();
    }
  })();
  return built;
}
