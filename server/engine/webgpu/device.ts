/**
 * The one GPUAdapter/GPUDevice of this process (or Worker): requested lazily on first use,
 * shared by every WebGPU session, and forgotten when lost so that the next request starts a
 * fresh device. Losing a device must not hang a session: `Gpu.lost` rejects with the
 * reason, and sessions race their waits against it (`unlessLost`).
 */
import type { BackendProbe } from "../backend.ts";

export interface Gpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** Human-readable adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  adapterName: string;
  /** Software adapter (llvmpipe, SwiftShader, WARP): correct but slow. */
  fallback: boolean;
  /** Rejects (never resolves) when the device is lost; attach it to every wait. */
  lost: Promise<never>;
}

export const HOW_TO_GET_AN_ADAPTER =
  "Deno exposes navigator.gpu by default; an adapter needs a GPU driver (Vulkan, Metal or " +
  "D3D12). On a machine without a GPU, install Mesa's software Vulkan driver (lavapipe/" +
  "llvmpipe, e.g. `apt-get install mesa-vulkan-drivers`) to get a (slow) fallback adapter.";

let current: Promise<Gpu> | null = null;

export function adapterName(info: GPUAdapterInfo | undefined): string {
  if (!info) return "unknown WebGPU adapter";
  if (info.description) return info.description;
  const parts = [info.vendor, info.architecture, info.device].filter((s) => s && s !== "0");
  return parts.length ? parts.join(" ") : "unknown WebGPU adapter";
}

/**
 * Limits above the WebGPU defaults that large runs need, requested up to what the adapter
 * offers: state and per-replica data can exceed the default 128 MiB binding, and big
 * workgroups (in threads and workgroup memory) keep large problems in one pass.
 */
function wantedLimits(adapter: GPUAdapter): Record<string, number> {
  const l = adapter.limits;
  return {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
  };
}

async function requestGpu(forget: () => void): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new Error(`WebGPU is unavailable: navigator.gpu is missing. ${HOW_TO_GET_AN_ADAPTER}`);
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`no WebGPU adapter found. ${HOW_TO_GET_AN_ADAPTER}`);
  const device = await adapter.requestDevice({ requiredLimits: wantedLimits(adapter) });
  const gpu: Gpu = {
    adapter,
    device,
    adapterName: adapterName(adapter.info),
    fallback: adapter.info?.isFallbackAdapter ?? false,
    lost: device.lost.then((info) => {
      // Forget it, so the next session gets a fresh device instead of a dead one.
      forget();
      throw new Error(`WebGPU device lost (${info.reason}): ${info.message}`);
    }),
  };
  // Nobody may be waiting when the loss happens; that must not be an unhandled rejection.
  gpu.lost.catch(() => {});
  device.onuncapturederror = (e) => {
    // Sessions check their work with error scopes; anything else is a bug worth seeing.
    console.error(`WebGPU uncaptured error on ${gpu.adapterName}: ${e.error.message}`);
  };
  return gpu;
}

/**
 * llvmpipe (Mesa's CPU driver) ends all loops of one shader invocation, without any error,
 * once they have run this many iterations in total (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS,
 * one counter shared by every loop). Kernels that loop over many steps in one dispatch must
 * stay below it there.
 */
export const LLVMPIPE_LOOP_LIMIT = 65535;

export function isLlvmpipe(gpu: Gpu): boolean {
  return /llvmpipe/i.test(gpu.adapterName);
}

/** The shared device, requested on first use. */
export function getGpu(): Promise<Gpu> {
  if (!current) {
    const forget = () => {
      if (current === request) current = null;
    };
    const request = requestGpu(forget);
    current = request;
    // A failed request is not cached: the next caller may find an adapter.
    request.catch(forget);
  }
  return current;
}

/** Availability and adapter name, without throwing. */
export async function probeGpu(): Promise<BackendProbe> {
  try {
    const gpu = await getGpu();
    return { available: true, adapter: gpu.adapterName, fallback: gpu.fallback };
  } catch (e) {
    return {
      available: false,
      adapter: "none",
      fallback: false,
      reason: e instanceof Error ? e.message : String(e),
    };
  }
}

/** Destroys the shared device (tests, shutdown); the next getGpu() requests a new one. */
export async function releaseGpu(): Promise<void> {
  const p = current;
  current = null;
  if (!p) return;
  try {
    (await p).device.destroy();
  } catch {
    // Never obtained: nothing to release.
  }
}

/**
 * Runs `body` inside validation and out-of-memory error scopes and throws the first error
 * (with `what` for context), so WebGPU mistakes surface as exceptions at the call site.
 */
export async function checked<T>(
  gpu: Gpu,
  what: string,
  body: () => T | Promise<T>,
): Promise<T> {
  const { device } = gpu;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let result: T;
  try {
    result = await body();
  } catch (e) {
    // Keep the scope stack balanced; the body's own exception is the one to report.
    await device.popErrorScope();
    await device.popErrorScope();
    throw e;
  }
  const validation = await unlessLost(gpu, device.popErrorScope());
  const oom = await unlessLost(gpu, device.popErrorScope());
  const error = validation ?? oom;
  if (error) throw new Error(`WebGPU error in ${what}: ${error.message}`);
  return result;
}

/** Awaits `work` unless the device is lost first, in which case this rejects with the reason. */
export function unlessLost<T>(gpu: Gpu, work: Promise<T>): Promise<T> {
  return Promise.race([work, gpu.lost]);
}
