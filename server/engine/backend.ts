/**
 * The interface every compute backend implements. A backend module knows how to probe its
 * hardware and how to open a KernelSession for an experiment it has kernels for. Sessions
 * must reproduce the reference session's semantics exactly (server/engine/reference.ts):
 *  - snapshots at steps 0, every, 2·every, …, and the final step, each metric a Float32Array
 *    with one value per replica; the step-0 snapshot is returned by the first advance();
 *  - a replica whose state becomes non-finite after update t is reported once as
 *    {type: "replica_diverged", step: t + 1, replica}, is frozen from then on, and its
 *    metrics read NaN;
 *  - experiments with frames return one frame of the current state at the end of each call;
 *  - random draws follow the experiment's documented Philox streams, so the noise matches
 *    the reference exactly and trajectories agree up to float32 rounding.
 * Metrics are computed where the state lives and read back once per advance() call.
 * exportState() returns the session's complete state at a step boundary; open(spec, state)
 * continues from it: bit-identically on the same backend, within the parity tolerances on
 * another (docs/checkpoints.md).
 */
import type { BackendName, KernelSession, RunSpec, SessionState } from "../experiments/types.ts";

export interface BackendProbe {
  available: boolean;
  /** Human-readable device name (e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15)"). */
  adapter: string;
  /** True for software adapters (llvmpipe, SwiftShader): `auto` does not pick those. */
  fallback: boolean;
  reason?: string;
}

export interface ComputeBackend {
  readonly name: BackendName;
  probe(): Promise<BackendProbe>;
  /** Experiments this backend has kernels for. */
  supports(experiment: string): boolean;
  /**
   * Opens a session at step 0, or continuing from `state` (an exported SessionState with
   * arrays, of any backend); replay states are handled by openSession, not here.
   */
  open(spec: RunSpec, state?: SessionState): Promise<KernelSession>;
  /** Whether open() takes a state with arrays for this experiment (else openSession replays). */
  restores(experiment: string): boolean;
}
