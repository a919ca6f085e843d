/**
 * The wasm compute backend: AssemblyScript kernels (kernels-as/, compiled by
 * server/build_wasm.ts to build/wasm/<kernel>.wasm with SIMD) running on V8's Wasm-SIMD on
 * the CPU. Each experiment with a wasm kernel registers a session factory in SESSIONS;
 * every session gets its own instance (and so its own linear memory). Nothing here touches
 * the main thread's globals, so sessions also run inside a Worker. Each kernel comes in a
 * strict and an FMA build; wasmBackend opens the one chosenWasmBuild() names (builds.ts).
 */
import type { BackendProbe, ComputeBackend } from "../backend.ts";
import type { KernelSession, RunSpec, SessionState } from "../../experiments/types.ts";
import { openShapeMattersSession } from "./shape_matters.ts";
import { openPegrSession } from "./pegr.ts";
import { openLinearLabelNoiseSession } from "./linear_label_noise.ts";
import { openLabelNoiseSession, openLargeLrSession } from "./pq_model.ts";
import {
  chosenWasmBuild,
  noteInstanceBuild,
  relaxedSimdAvailable,
  wasmAdapterName,
  type WasmBuild,
  wasmFileName,
} from "./builds.ts";

/** Where server/build_wasm.ts writes the compiled kernels. */
export const WASM_BUILD_DIR = new URL("../../../build/wasm/", import.meta.url);

export interface WasmSessionFactory {
  /** Kernel file name without extension: build/wasm/<kernel>.wasm. */
  kernel: string;
  /** With `state`, the session continues from that checkpoint (docs/checkpoints.md). */
  open(spec: RunSpec, instance: WebAssembly.Instance, state?: SessionState): KernelSession;
}

/** Experiment id → how to open its wasm session. Later experiments add their entry here. */
const SESSIONS: Record<string, WasmSessionFactory> = {
  "shape-matters": { kernel: "shape_matters", open: openShapeMattersSession },
  "linear-label-noise": { kernel: "linear_label_noise", open: openLinearLabelNoiseSession },
  pegr: { kernel: "pegr", open: openPegrSession },
  "large-lr": { kernel: "pq_model", open: openLargeLrSession },
  "label-noise-anneal": { kernel: "pq_model", open: openLabelNoiseSession },
};

/** Experiments whose wasm session exports and restores its state (docs/checkpoints.md). */
const WASM_RESTORES = new Set([
  "shape-matters",
  "pegr",
  "large-lr",
  "label-noise-anneal",
  "linear-label-noise",
]);

/**
 * Smallest module using a v128 (one function returning v128.const 0): validates only where
 * the engine has Wasm SIMD, which every kernel is compiled with.
 */
const SIMD_PROBE = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version
  0x01,
  0x05,
  0x01,
  0x60,
  0x00,
  0x01,
  0x7b, // type: () -> v128
  0x03,
  0x02,
  0x01,
  0x00, // function 0 has type 0
  0x0a,
  0x16,
  0x01,
  0x14,
  0x00,
  0xfd,
  0x0c, // code: no locals, v128.const
  ...new Array(16).fill(0),
  0x0b, // end
]);

const modules = new Map<string, Promise<WebAssembly.Module>>();

async function compileKernel(kernel: string, build: WasmBuild): Promise<WebAssembly.Module> {
  if (build === "fma" && !relaxedSimdAvailable()) {
    throw new Error(
      "the FMA build of the wasm kernels needs WebAssembly relaxed SIMD, which this engine " +
        "lacks: use --wasm-fma=off",
    );
  }
  const file = wasmFileName(kernel, build);
  const url = new URL(file, WASM_BUILD_DIR);
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(url);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `wasm kernel build/wasm/${file} is missing: run \`deno task build\` first`,
      );
    }
    throw e;
  }
  return await WebAssembly.compile(bytes);
}

/**
 * Compiles a kernel's build once per process (or worker); a failed load is retried next
 * time. Default: the build chosenWasmBuild() names.
 */
export function loadKernel(
  kernel: string,
  build: WasmBuild = chosenWasmBuild(),
): Promise<WebAssembly.Module> {
  const key = wasmFileName(kernel, build);
  let module = modules.get(key);
  if (!module) {
    module = compileKernel(kernel, build);
    modules.set(key, module);
    module.catch(() => modules.delete(key));
  }
  return module;
}

/** A fresh instance of a kernel. Its only import is AssemblyScript's abort (heap exhausted). */
export async function instantiateKernel(
  kernel: string,
  build: WasmBuild = chosenWasmBuild(),
): Promise<WebAssembly.Instance> {
  const module = await loadKernel(kernel, build);
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(_message: number, _file: number, line: number, column: number) {
        throw new Error(
          `wasm kernel ${kernel} aborted at ${line}:${column} (out of wasm memory?)`,
        );
      },
    },
  });
  noteInstanceBuild(instance, build);
  return instance;
}

/**
 * The wasm backend on one build (`build`), or on the build chosenWasmBuild() names when each
 * session opens (undefined: what the server and the CLI use).
 */
export function wasmBackendFor(build?: WasmBuild): ComputeBackend {
  const which = () => build ?? chosenWasmBuild();
  return {
    name: "wasm",
    probe(): Promise<BackendProbe> {
      const simd = WebAssembly.validate(SIMD_PROBE);
      const b = which();
      if (b === "fma" && !relaxedSimdAvailable()) {
        return Promise.resolve({
          available: false,
          adapter: wasmAdapterName(b),
          fallback: false,
          reason: "this engine has no WebAssembly relaxed SIMD (the FMA build)",
        });
      }
      return Promise.resolve({
        available: simd,
        adapter: wasmAdapterName(b),
        fallback: false,
        ...(simd ? {} : { reason: "this engine has no WebAssembly SIMD" }),
      });
    },
    supports(experiment: string): boolean {
      return experiment in SESSIONS;
    },
    restores(experiment: string): boolean {
      return WASM_RESTORES.has(experiment);
    },
    async open(spec: RunSpec, state?: SessionState): Promise<KernelSession> {
      const factory = SESSIONS[spec.experiment];
      if (!factory) throw new Error(`the wasm backend has no kernel for ${spec.experiment}`);
      return factory.open(spec, await instantiateKernel(factory.kernel, which()), state);
    },
  };
}

export const wasmBackend: ComputeBackend = wasmBackendFor();
