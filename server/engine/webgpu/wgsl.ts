/**
 * WGSL sources and compute pipelines. WGSL has no imports, so a kernel is assembled as text:
 * a header of constants, then shared files (philox.wgsl), then the kernel file. Pipelines are
 * cached per device and source text, since compiling is slow on software adapters.
 */
import { checked, type Gpu } from "./device.ts";

const sources = new Map<string, Promise<string>>();

/** Text of kernels-wgsl/<name>, read once per process. */
export function wgslSource(name: string): Promise<string> {
  let text = sources.get(name);
  if (!text) {
    text = Deno.readTextFile(new URL(`../../../kernels-wgsl/${name}`, import.meta.url));
    sources.set(name, text);
    text.catch(() => sources.delete(name));
  }
  return text;
}

/** WGSL constant declarations from a record (numbers become u32, booleans bool). */
export function constHeader(consts: Record<string, number | boolean>): string {
  return Object.entries(consts).map(([name, value]) => {
    if (typeof value === "boolean") return `const ${name}: bool = ${value};`;
    if (!Number.isInteger(value) || value < 0 || value > 0xFFFFFFFF) {
      throw new Error(`WGSL constant ${name} must be a u32, got ${value}`);
    }
    return `const ${name}: u32 = ${value}u;`;
  }).join("\n") + "\n";
}

/** header + the named files, in order. */
export async function assemble(header: string, files: string[]): Promise<string> {
  const texts = await Promise.all(files.map(wgslSource));
  return [header, ...texts].join("\n");
}

const pipelines = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();
const layoutIds = new WeakMap<GPUPipelineLayout, number>();
let nextLayoutId = 1;

function layoutKey(layout: GPUPipelineLayout | "auto"): string {
  if (layout === "auto") return "auto";
  let id = layoutIds.get(layout);
  if (id === undefined) layoutIds.set(layout, id = nextLayoutId++);
  return `layout${id}`;
}

/**
 * A compute pipeline for `code`, compiled once per device. Compilation errors are thrown with
 * the compiler's messages (line:column), not left to surface as uncaptured errors.
 */
export function computePipeline(
  gpu: Gpu,
  label: string,
  code: string,
  entryPoint: string,
  layout: GPUPipelineLayout | "auto",
): Promise<GPUComputePipeline> {
  let cache = pipelines.get(gpu.device);
  if (!cache) pipelines.set(gpu.device, cache = new Map());
  // Callers keep one explicit layout per device, so (layout, entry, text) identifies a pipeline.
  const key = `${layoutKey(layout)}\n${entryPoint}\n${code}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const made = checked(gpu, `compiling ${label}`, async () => {
    const module = gpu.device.createShaderModule({ label, code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length) {
      throw new Error(
        `WGSL ${label} does not compile:\n` +
          errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join("\n"),
      );
    }
    return gpu.device.createComputePipeline({ label, layout, compute: { module, entryPoint } });
  });
  cache.set(key, made);
  made.catch(() => cache.delete(key));
  return made;
}
