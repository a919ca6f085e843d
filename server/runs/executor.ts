/**
 * Where a run is computed, when not here: the seam between the run manager (store, recorder,
 * stream: one path for every run) and another way of computing its records. The manager
 * computes runs itself unless given an executor; the multi-box coordinator
 * (server/cluster/coordinator.ts) is one, publishing the run as jobs for workers and feeding
 * their records into the run's recorder.
 */
import type { RunSpec } from "../experiments/types.ts";
import type { BodyRecord, HeaderRecord } from "./records.ts";
import type { RunRecorder } from "./recorder.ts";

/** The executor cannot take runs now (e.g. NATS is down): HTTP 503, runs already stored stay. */
export class ComputeUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ComputeUnavailableError";
  }
}

/** What the executor decides when a run is submitted, written into the run's header. */
export interface Admission {
  backend: string;
  adapter: string;
  /** The replicas' split into shards (header.cluster), fixed for the run's whole life. */
  shards?: { first: number; count: number }[];
}

export interface ExecutedRun {
  id: string;
  header: HeaderRecord;
  /** Every record goes through it: it writes the log and feeds the stream. */
  recorder: RunRecorder;
  /** Aborted on stop or delete; with reason SHUTDOWN (driver.ts) when the server stops. */
  signal: AbortSignal;
  /** The run was in flight when the previous server stopped: its log already holds records. */
  reattached: boolean;
  /** The run's records as its log holds them (read on demand). */
  records(): AsyncIterable<BodyRecord>;
}

export interface RunExecutor {
  /** Checks that a run can be taken now and decides where it goes; throws to refuse it. */
  admit(spec: RunSpec): Promise<Admission>;
  /**
   * Computes the run through `run.recorder` up to its terminal status; on a SHUTDOWN abort it
   * returns without one (the run goes on elsewhere and is reattached at the next start).
   */
  execute(run: ExecutedRun): Promise<void>;
}
