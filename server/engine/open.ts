/**
 * Backend selection and session opening. `auto` picks WebGPU when a hardware (non-fallback)
 * adapter exists, else the Wasm-SIMD backend; an explicit choice is honoured or refused
 * with a message saying why.
 */
import type { BackendChoice, BackendName, KernelSession, RunSpec } from "../experiments/types.ts";
import { getExperiment } from "../experiments/registry.ts";
import type { BackendProbe, ComputeBackend } from "./backend.ts";
import { wasmBackend } from "./wasm/backend.ts";
import { webgpuBackend } from "./webgpu/backend.ts";

const referenceBackend: ComputeBackend = {
  name: "reference",
  probe: () =>
    Promise.resolve({ available: true, adapter: "float64 TypeScript reference", fallback: false }),
  supports: () => true,
  open(spec: RunSpec) {
    const exp = getExperiment(spec.experiment);
    return Promise.resolve(exp.reference(exp.prepare(spec), spec));
  },
};

export const BACKENDS: Record<BackendName, ComputeBackend> = {
  wasm: wasmBackend,
  webgpu: webgpuBackend,
  reference: referenceBackend,
};

const probes = new Map<BackendName, Promise<BackendProbe>>();

export function probeBackend(name: BackendName): Promise<BackendProbe> {
  let p = probes.get(name);
  if (!p) {
    p = BACKENDS[name].probe().catch((e) => ({
      available: false,
      adapter: "",
      fallback: false,
      reason: e instanceof Error ? e.message : String(e),
    }));
    probes.set(name, p);
  }
  return p;
}

export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackendUnavailableError";
  }
}

/** Resolves a backend choice for an experiment to a concrete backend, or throws saying why. */
export async function resolveBackend(
  choice: BackendChoice,
  experiment: string,
): Promise<{ name: BackendName; probe: BackendProbe }> {
  if (choice === "auto") {
    const gpu = await probeBackend("webgpu");
    if (gpu.available && !gpu.fallback && webgpuBackend.supports(experiment)) {
      return { name: "webgpu", probe: gpu };
    }
    if (wasmBackend.supports(experiment)) {
      return { name: "wasm", probe: await probeBackend("wasm") };
    }
    return { name: "reference", probe: await probeBackend("reference") };
  }
  const backend = BACKENDS[choice];
  if (!backend.supports(experiment)) {
    throw new BackendUnavailableError(`backend ${choice} has no kernels for ${experiment}`);
  }
  const probe = await probeBackend(choice);
  if (!probe.available) {
    throw new BackendUnavailableError(
      `backend ${choice} is not available: ${probe.reason ?? "unknown reason"}`,
    );
  }
  return { name: choice, probe };
}

/** Opens a session in this thread (tests, workers). Most callers want openWorkerSession. */
export async function openSession(spec: RunSpec): Promise<KernelSession> {
  const { name } = await resolveBackend(spec.backend, spec.experiment);
  return BACKENDS[name].open({ ...spec, backend: name });
}
