/**
 * Compiles the AssemblyScript kernels (kernels-as/*.ts) to build/wasm/<name>.wasm with SIMD
 * and -O3, using the npm `assemblyscript` compiler, and each a second time with relaxed SIMD
 * to build/wasm/<name>.fma.wasm: the FMA build, where kernels-as/simd.ts madd/nmadd are
 * f32x4.relaxed_madd/nmadd (server/engine/wasm/backend.ts picks the build at run time). Entries are the kernels-as modules that
 * no other kernels-as module imports; the imported ones (philox.ts) are shared helpers that
 * asc pulls into each entry. Run `deno run -A server/build_wasm.ts`, or call buildWasm()
 * (server/build.ts does, for `deno task build`).
 */
import { resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

const ROOT = new URL("../", import.meta.url);
const SOURCE_DIR = new URL("kernels-as/", ROOT);
export const WASM_OUT_DIR = new URL("build/wasm/", ROOT);

/** Flags for every kernel: runtime stub = bump allocator, no GC (kernels never free). */
const ASC_FLAGS = ["-O3", "--runtime", "stub", "--noAssert", "--enable", "simd"];

/** The two builds of every kernel: file suffix and the extra compiler flags. */
export const WASM_BUILDS = {
  /** Mul then add, rounded twice: the same numbers on every machine (up to V8). */
  strict: { suffix: "", flags: [] as string[] },
  /** Relaxed SIMD: madd/nmadd fuse where the CPU has FMA (ASC_FEATURE_RELAXED_SIMD). */
  fma: { suffix: ".fma", flags: ["--enable", "relaxed-simd"] },
} as const;
export type WasmBuild = keyof typeof WASM_BUILDS;

/** Every build, strict first: the build makes each, tests loop over them. */
export const WASM_BUILD_NAMES = Object.keys(WASM_BUILDS) as readonly WasmBuild[];

/** build/wasm/<kernel><suffix>.wasm: the file name of a kernel's build. */
export function wasmFileName(kernel: string, build: WasmBuild): string {
  return `${kernel}${WASM_BUILDS[build].suffix}.wasm`;
}

interface KernelSources {
  /** Every kernels-as/*.ts file name. */
  all: string[];
  /** The ones compiled to a .wasm each. */
  entries: string[];
}

async function listKernelSources(): Promise<KernelSources> {
  const all: string[] = [];
  for await (const entry of Deno.readDir(SOURCE_DIR)) {
    if (entry.isFile && entry.name.endsWith(".ts")) all.push(entry.name);
  }
  all.sort();
  const imported = new Set<string>();
  for (const name of all) {
    const text = await Deno.readTextFile(new URL(name, SOURCE_DIR));
    for (const m of text.matchAll(/from\s+["']\.\/([\w.-]+?)(?:\.ts)?["']/g)) {
      imported.add(`${m[1]}.ts`);
    }
  }
  return { all, entries: all.filter((name) => !imported.has(name)) };
}

async function mtimeMs(url: URL): Promise<number> {
  try {
    return (await Deno.stat(url)).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return -1;
    throw e;
  }
}

/**
 * asc's file reader, except that kernels import each other with the ".ts" extension (as
 * Deno requires, so `deno check` can resolve kernels-as/ too) while asc appends ".ts" to
 * every import path: "philox.ts.ts" is read from "philox.ts".
 */
async function readSource(name: string, baseDir: string): Promise<string | null> {
  const file = name.endsWith(".ts.ts") ? name.slice(0, -3) : name;
  try {
    return await Deno.readTextFile(resolve(baseDir, file));
  } catch {
    return null;
  }
}

/** Compiles one entry in one build; throws with asc's diagnostics if it does not compile. */
async function compileEntry(name: string, build: WasmBuild): Promise<void> {
  // Imported lazily: the compiler and Binaryen take a while to load, and modules that only
  // need ensureWasm() (tests with an up-to-date build) should not pay for that.
  const asc = (await import("assemblyscript/asc")).default;
  const kernel = name.replace(/\.ts$/, "");
  const outFile = new URL(wasmFileName(kernel, build), WASM_OUT_DIR);
  // Write next to the target and rename, so a concurrent reader never sees half a file.
  const tmpFile = new URL(
    `${kernel}${WASM_BUILDS[build].suffix}.${Deno.pid}.tmp.wasm`,
    WASM_OUT_DIR,
  );
  const stdout = asc.createMemoryStream();
  const stderr = asc.createMemoryStream();
  const { error } = await asc.main(
    [
      fromFileUrl(new URL(name, SOURCE_DIR)),
      "--outFile",
      fromFileUrl(tmpFile),
      ...ASC_FLAGS,
      ...WASM_BUILDS[build].flags,
    ],
    { stdout, stderr, readFile: readSource },
  );
  if (error) {
    await Deno.remove(tmpFile).catch(() => {});
    throw new Error(
      `AssemblyScript compilation of kernels-as/${name} (${build} build) failed: ${error.message}\n${stderr}`,
    );
  }
  await Deno.rename(tmpFile, outFile);
}

/**
 * Compiles every kernel entry to build/wasm/<name>.wasm and <name>.fma.wasm. A kernel that fails does not stop
 * the others from building; the error thrown at the end carries every compiler message.
 */
export async function buildWasm(): Promise<void> {
  const { entries } = await listKernelSources();
  await Deno.mkdir(WASM_OUT_DIR, { recursive: true });
  const failures: string[] = [];
  for (const name of entries) {
    for (const build of WASM_BUILD_NAMES) {
      try {
        await compileEntry(name, build);
      } catch (e) {
        failures.push(e instanceof Error ? e.message : String(e));
      }
    }
  }
  if (failures.length) throw new Error(failures.join("\n"));
}

/**
 * Builds only if some kernel's .wasm is missing or older than any kernels-as source (a
 * change to a shared helper rebuilds every entry). For tests that must run standalone.
 */
export async function ensureWasm(): Promise<void> {
  const { all, entries } = await listKernelSources();
  const newestSource = Math.max(
    ...await Promise.all(all.map((n) => mtimeMs(new URL(n, SOURCE_DIR)))),
  );
  const outputs = await Promise.all(
    entries.flatMap((n) =>
      WASM_BUILD_NAMES.map((b) =>
        mtimeMs(new URL(wasmFileName(n.replace(/\.ts$/, ""), b), WASM_OUT_DIR))
      )
    ),
  );
  if (outputs.some((t) => t < newestSource)) await buildWasm();
}

if (import.meta.main) {
  const t0 = performance.now();
  await buildWasm();
  const { entries } = await listKernelSources();
  console.log(
    `built ${
      entries.map((n) => `build/wasm/${n.replace(/\.ts$/, "{,.fma}.wasm")}`).join(", ")
    } in ${Math.round(performance.now() - t0)} ms`,
  );
}
