/**
 * Runs a wasm test once per kernel build (strict and FMA, server/engine/wasm/builds.ts), so
 * the same checks, tolerances unchanged, hold for both: testEachWasmBuild registers
 * "<name> [strict build]" and "<name> [fma build]", and inside each the `wasmBackend` this
 * module exports opens sessions on that build. Tests of one file run one at a time, so the
 * build of the running test is plain module state; outside such a test the backend throws.
 */
import type { BackendProbe, ComputeBackend } from "../server/engine/backend.ts";
import type { KernelSession, RunSpec, SessionState } from "../server/experiments/types.ts";
import { wasmBackendFor } from "../server/engine/wasm/backend.ts";
import { WASM_BUILD_NAMES, type WasmBuild } from "../server/engine/wasm/builds.ts";

let running: ComputeBackend | undefined;

function current(): ComputeBackend {
  if (!running) {
    throw new Error("wasmBackend of test/wasm_builds.ts used outside testEachWasmBuild");
  }
  return running;
}

/** The wasm backend on the build of the test now running (testEachWasmBuild). */
export const wasmBackend: ComputeBackend = {
  name: "wasm",
  probe: (): Promise<BackendProbe> => current().probe(),
  supports: (experiment: string): boolean => current().supports(experiment),
  restores: (experiment: string): boolean => current().restores(experiment),
  open: (spec: RunSpec, state?: SessionState): Promise<KernelSession> =>
    current().open(spec, state),
};

/** Registers `fn` as one test per wasm build. */
export function testEachWasmBuild(name: string, fn: (build: WasmBuild) => Promise<void> | void) {
  for (const build of WASM_BUILD_NAMES) {
    Deno.test(`${name} [${build} build]`, async () => {
      running = wasmBackendFor(build);
      try {
        await fn(build);
      } finally {
        running = undefined;
      }
    });
  }
}
