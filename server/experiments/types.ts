/**
 * What an experiment module provides: the science (schema, data, float64 reference) and
 * nothing about backends. Backend kernels for an experiment live in server/engine/<backend>/
 * and are looked up by experiment id.
 */
import type { MetricSpec, Params, ParamSchema } from "./schema.ts";
import type { SweepInfo } from "./sweep.ts";

export type BackendName = "wasm" | "webgpu" | "reference";
export type BackendChoice = BackendName | "auto";

/** A validated, fully defaulted run specification: the one object that reproduces a run. */
export interface RunSpec {
  experiment: string;
  params: Params;
  replicas: number;
  steps: number;
  every: number;
  backend: BackendChoice;
  /** Optional human label (e.g. a preset's "label noise"); shown by the dashboard and CLI. */
  name?: string;
  /** Free labels for finding runs again (renamed/retagged later by annotation records). */
  tags?: string[];
  note?: string;
  /** Present when the replicas are a grid of settings × seeds (server/experiments/sweep.ts). */
  sweep?: SweepInfo;
  /**
   * This spec is a shard of a larger run starting at that run's replica `firstReplica`
   * (server/experiments/shard.ts, docs/sweeps.md "Shards"): replica k here is replica
   * firstReplica + k there for every random draw (Philox key), per-replica data seed and
   * initialisation. Its per-replica parameters are already the shard's slice. Absent = 0.
   * Snapshots, frames and the numeric `replica` of events stay local (k); a merger adds
   * firstReplica. Event texts (`detail`) name the global replica.
   */
  firstReplica?: number;
}

/** Metric values at one step: one Float32Array (value per replica) per metric name. */
export interface Snapshot {
  step: number;
  /** Milliseconds since the run started computing, host clock, interpolated inside a call. */
  wallMs: number;
  metrics: Record<string, Float32Array>;
}

/** Events of a run's timeline, as they appear in the stream, the log and the CLI. */
export type RunEvent =
  & { step: number }
  & (
    | { type: "lr_change"; factor: number; lr_scale: number }
    | { type: "replica_diverged"; replica: number }
    | { type: "phase_change"; phase: string; detail?: string; replica?: number }
    | { type: "noise_off"; detail?: string }
    | { type: "note"; detail: string }
    // A run continued from a checkpoint at `step` (after a restart or by hand).
    | { type: "resumed"; detail?: string }
  );

/** Extra per-step data some experiments stream besides scalar metrics (e.g. v⊙v per coordinate). */
export interface Frame {
  step: number;
  name: string;
  /** Row-major [replicas × width]. */
  values: Float32Array;
  width: number;
}

/**
 * The snapshots of one advance() column-wise, for runs that snapshot every step or so: no
 * object per snapshot, a few typed arrays per call (server/engine/snapshot_columns.ts). Row i
 * is the i-th snapshot: `steps[i]`, `wallMs[i]`, and each metric's R values (one per replica)
 * at [i·R, (i+1)·R) of `metrics[name]`.
 */
export interface SnapshotColumns {
  replicas: number;
  steps: Float64Array;
  wallMs: Float64Array;
  metrics: Record<string, Float32Array>;
}

export interface AdvanceOptions {
  /**
   * The caller takes the snapshots column-wise (AdvanceResult.columns). A session may still
   * report them in `snapshots`; the caller converts (snapshot_columns.ts resultColumns).
   */
  columns?: boolean;
}

export interface AdvanceResult {
  snapshots: Snapshot[];
  /** Only when the caller asked for columns: the snapshots, and `snapshots` is then empty. */
  columns?: SnapshotColumns;
  events: RunEvent[];
  frames: Frame[];
}

/** Arrays a session state carries: float state, divergence steps, per-replica flags. */
export type StateArray = Float64Array | Float32Array | Int32Array | Uint8Array;

/**
 * A session's complete state at a step boundary (docs/checkpoints.md): what the next step,
 * snapshot, event and frame depend on, in a backend-neutral form. `arrays` hold the model's
 * state under names fixed per experiment (documented there), unpadded and row-major, float64
 * on the reference and float32 on the kernels; a backend opening a state of another backend
 * converts (and so continues within the parity tolerances, bit-identically on its own kind).
 * `counters` hold scalars (e.g. the schedule's position). A state with `replay: true` carries
 * no arrays: the session that wrote it cannot export its device state, and opening it re-runs
 * the run from step 0 to `step` (slower, still bit-identical).
 */
export interface SessionState {
  format: "lab-session-state";
  version: 1;
  experiment: string;
  /** Updates applied: the next advance() continues from here. */
  step: number;
  /** The backend that wrote it (informative; any backend may open it). */
  backend: BackendName;
  /** Milliseconds of compute so far, so that resumed snapshots' wallMs continue the count. */
  wallMs: number;
  arrays: Record<string, StateArray>;
  counters: Record<string, number>;
  replay?: boolean;
  /**
   * A threaded session's state (server/engine/shard_state.ts): each shard's replica range and
   * its own state; `arrays` is then empty. Opening it splits the run the same way again.
   */
  shards?: { first: number; count: number; state: SessionState }[];
}

/**
 * A backend's running instance of one run: R replicas in lockstep. `advance(target)` moves all
 * replicas to `target` and returns every snapshot with step ≤ target not yet returned; the
 * snapshot steps are 0, every, 2·every, … and the final step.
 */
export interface KernelSession {
  readonly backend: BackendName;
  readonly adapter: string;
  readonly step: number;
  /** Workers stepping the session's replicas (server/engine/threaded_session.ts); absent: 1. */
  readonly threads?: number;
  /**
   * advance() may be called again before the last call has settled: calls run one after the
   * other, in the order made (a session in a Worker). The driver then asks for the next call
   * while it writes the last one's records, so the kernel never waits for the log.
   */
  readonly pipelined?: boolean;
  advance(target: number, options?: AdvanceOptions): Promise<AdvanceResult>;
  /**
   * The complete state after the last advance() (a step boundary). Absent, or resolving to
   * null, where a session cannot read its state back; such runs checkpoint as replay states.
   */
  exportState?(): Promise<SessionState | null>;
  dispose(): void | Promise<void>;
}

export interface FrameSpec {
  name: string;
  doc: string;
  /** Snapshots between frames: frames are larger than scalar metrics, so they are rarer. */
  everySnapshots: number;
  /** Floats in all of a run's frames of this name, for the disk budget (server/runs/budget.ts). */
  projectedFloats?(spec: RunSpec): number;
}

export interface ExperimentDefinition<Prepared = unknown> {
  id: string;
  title: string;
  /** Paper citation and the notes file in ../shared/papers. */
  paper: string;
  notes: string;
  params: ParamSchema;
  metrics: MetricSpec[];
  frames?: FrameSpec[];
  /**
   * Snapshots between frames for this spec (default: frames[0].everySnapshots); frames come
   * at the fixed steps of isFrameStep (server/engine/snapshots.ts).
   */
  frameEvery?(spec: RunSpec): number;
  defaults: { steps: number; every: number; replicas: number };
  /** Turns a validated spec into arrays the kernels consume (data, per-replica hyper-params). */
  prepare(spec: RunSpec): Prepared;
  /**
   * Float64 reference session: the test oracle and the slowest backend. With `state`, the
   * session continues from that checkpoint (server/engine/session_state.ts).
   */
  reference(prepared: Prepared, spec: RunSpec, state?: SessionState): KernelSession;
  /** Bytes of device memory a run needs, estimated before allocating anything. */
  estimateBytes(spec: RunSpec): number;
  /** Events known in advance (learning-rate changes, switch-offs), at their steps. */
  plannedEvents(spec: RunSpec): RunEvent[];
}
