/**
 * Which build of the wasm kernels runs: the strict build (build/wasm/<kernel>.wasm, every
 * multiply-add a mul then an add, rounded twice) or the FMA build (<kernel>.fma.wasm, the
 * hot multiply-adds as relaxed-SIMD f32x4.relaxed_madd/nmadd; server/build_wasm.ts). The FMA
 * build runs where the engine validates relaxed SIMD and LAB_WASM_FMA is not "off" (the
 * `--wasm-fma=off` flag of serve, worker, run and resume sets it, so every Worker of the
 * process sees the same choice).
 *
 * Determinism: relaxed_madd is fused or not as the CPU decides (V8 emits vfmadd where the CPU
 * has FMA), so an FMA-build run is bit-reproducible on the same machine and build (threads,
 * checkpoint resume), and across machines agrees within the parity tolerances.
 */
import { WASM_BUILD_NAMES, type WasmBuild, wasmFileName } from "../../build_wasm.ts";

export type { WasmBuild };
export { WASM_BUILD_NAMES, wasmFileName };

/** The environment variable behind `--wasm-fma`: "auto" (default) or "off". */
export const WASM_FMA_ENV = "LAB_WASM_FMA";
export const WASM_FMA_SETTINGS = ["auto", "off"] as const;
export type WasmFmaSetting = typeof WASM_FMA_SETTINGS[number];

/**
 * The smallest module using relaxed SIMD: () -> v128 returning f32x4.relaxed_madd of three
 * v128.const 0. Validates only where the engine has relaxed SIMD.
 */
const RELAXED_SIMD_PROBE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // type: () -> v128
  ...[0x03, 0x02, 0x01, 0x00], // function 0 has type 0
  ...[0x0a, 0x3d, 0x01, 0x3b, 0x00], // code section, one body of 59 bytes, no locals
  ...[0xfd, 0x0c, ...new Array(16).fill(0)], // v128.const 0
  ...[0xfd, 0x0c, ...new Array(16).fill(0)],
  ...[0xfd, 0x0c, ...new Array(16).fill(0)],
  ...[0xfd, 0x85, 0x02], // f32x4.relaxed_madd (0xfd 0x105)
  0x0b, // end
]);

/** Whether this engine runs relaxed SIMD (the FMA build). */
export function relaxedSimdAvailable(): boolean {
  return WebAssembly.validate(RELAXED_SIMD_PROBE);
}

/** A `--wasm-fma` value checked: the error names the flag and the accepted values. */
export function parseWasmFmaSetting(raw: string | undefined, source: string): WasmFmaSetting {
  const value = raw ?? "auto";
  if (!(WASM_FMA_SETTINGS as readonly string[]).includes(value)) {
    throw new Error(`${source} must be one of ${WASM_FMA_SETTINGS.join(", ")}, got ${value}`);
  }
  return value as WasmFmaSetting;
}

/** The setting in force: LAB_WASM_FMA, default "auto". */
export function wasmFmaSetting(): WasmFmaSetting {
  return parseWasmFmaSetting(Deno.env.get(WASM_FMA_ENV) || undefined, WASM_FMA_ENV);
}

/** Sets the process's choice (the `--wasm-fma` flag): Workers started later inherit it. */
export function setWasmFmaSetting(setting: WasmFmaSetting): void {
  Deno.env.set(WASM_FMA_ENV, setting);
}

/** The build a session opened now runs: FMA unless forbidden or not validated. */
export function chosenWasmBuild(): WasmBuild {
  return wasmFmaSetting() !== "off" && relaxedSimdAvailable() ? "fma" : "strict";
}

/** The adapter string runs record: says which build ran. */
export function wasmAdapterName(build: WasmBuild): string {
  return `wasm-simd128${build === "fma" ? "+fma" : ""} (V8 ${Deno.version.v8})`;
}

const instanceBuilds = new WeakMap<WebAssembly.Instance, WasmBuild>();

/** Records which build an instance was made from (backend.ts instantiateKernel). */
export function noteInstanceBuild(instance: WebAssembly.Instance, build: WasmBuild): void {
  instanceBuilds.set(instance, build);
}

/** The adapter string of a session on this instance. */
export function wasmAdapterOf(instance: WebAssembly.Instance): string {
  return wasmAdapterName(instanceBuilds.get(instance) ?? "strict");
}
