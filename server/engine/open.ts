/**
 * Backend selection and session opening. `auto` picks WebGPU when a hardware (non-fallback)
 * adapter exists, else the Wasm-SIMD backend; an explicit choice is honoured or refused
 * with a message saying why.
 */
import type {
  BackendChoice,
  BackendName,
  KernelSession,
  RunSpec,
  SessionState,
} from "../experiments/types.ts";
import { getExperiment } from "../experiments/registry.ts";
import type { BackendProbe, ComputeBackend } from "./backend.ts";
import { wasmBackend } from "./wasm/backend.ts";
import { webgpuBackend } from "./webgpu/backend.ts";
import { checkSessionState } from "./session_state.ts";
import { joinShardStates } from "./shard_state.ts";

/** Experiments whose reference session exports and restores its state. */
const REFERENCE_RESTORES = new Set([
  "shape-matters",
  "pegr",
  "large-lr",
  "label-noise-anneal",
  "linear-label-noise",
]);

const referenceBackend: ComputeBackend = {
  name: "reference",
  probe: () =>
    Promise.resolve({ available: true, adapter: "float64 TypeScript reference", fallback: false }),
  supports: () => true,
  restores: (experiment) => REFERENCE_RESTORES.has(experiment),
  open(spec: RunSpec, state?: SessionState) {
    const exp = getExperiment(spec.experiment);
    return Promise.resolve(exp.reference(exp.prepare(spec), spec, state));
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

/**
 * Opens a session in this thread (tests, workers). Most callers want openWorkerSession.
 * With `state` (a checkpoint of any backend) the session continues from it; where the
 * backend cannot load the state's arrays, or the state is a replay state, the session is
 * opened at step 0 and advanced to the state's step, its results dropped: the same numbers,
 * by determinism, at the cost of recomputing.
 */
export async function openSession(spec: RunSpec, state?: SessionState): Promise<KernelSession> {
  const { name } = await resolveBackend(spec.backend, spec.experiment);
  const backend = BACKENDS[name];
  const resolved = { ...spec, backend: name };
  if (!state) return backend.open(resolved);
  checkSessionState(state, spec);
  // A threaded run's checkpoint opened by one session: its shards' rows joined.
  if (state.shards) state = joinShardStates(state, spec);
  if (!state.replay && backend.restores(spec.experiment)) return backend.open(resolved, state);
  const session = await backend.open(resolved);
  try {
    // Its results are dropped: columns cost the least to make.
    if (state.step > 0) await session.advance(state.step, { columns: true });
  } catch (e) {
    await session.dispose();
    throw e;
  }
  return session;
}
