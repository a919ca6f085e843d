/**
 * The server's runs: validation, the memory and disk checks and a bounded queue at
 * submission, a concurrency limit per backend, kernels in a Worker (openWorkerSession) so the
 * event loop stays free for HTTP and streams, and the run store (store.ts) under
 * `<data>/runs/`. A run computing keeps a ring of recent records so subscribers that are
 * nearly caught up never touch the disk; a run that has ended holds nothing in memory but its
 * summary, and is read back from its log and derived files. On start the store reads catalogue
 * entries, not logs; runs that were queued or running when the previous server stopped are
 * resumed from their checkpoint (server/runs/resume.ts), or with `resume: false` get an
 * `interrupted` status record appended. Running runs checkpoint themselves every
 * `checkpointIntervalMs`.
 */
import type {
  BackendChoice,
  BackendName,
  KernelSession,
  RunSpec,
  SessionState,
} from "../experiments/types.ts";
import { getExperiment, validateRunSpec } from "../experiments/registry.ts";
import type { FieldError } from "../experiments/schema.ts";
import type { BackendProbe } from "../engine/backend.ts";
import { resolveBackend } from "../engine/open.ts";
import { defaultServerThreads, openThreadedSession } from "../engine/threaded_session.ts";
import { driveRun, SHUTDOWN } from "./driver.ts";
import {
  checkpointPathFor,
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  removeCheckpoint,
  saveRunCheckpoint,
} from "./checkpoints.ts";
import { planResume, type ResumePlan, startResumed } from "./resume.ts";
import { newRunId, RUN_ID_PATTERN } from "./ids.ts";
import { RunRecorder } from "./recorder.ts";
import type { BodyRecord, HeaderRecord, LogRecord, RunStatus, StatusRecord } from "./records.ts";
import { RunLogWriteError, type RunLogWriter } from "./runlog.ts";
import { RecordRing } from "./ring.ts";
import { relieveMemorySoon } from "../memory_relief.ts";
import { newRunHeader } from "./header.ts";
import {
  type DamageReport,
  damageReport,
  endedInDamage,
  foldRecords,
  RunStore,
  type StoredRun,
  TERMINAL,
} from "./store.ts";
import type { Decimated } from "./history.ts";
import type { HistoryQuery } from "./run_index.ts";
import { csvChunks } from "./export.ts";
import { projectLogBytes } from "./budget.ts";
import { ReadCache } from "./read_cache.ts";
import type { SweepInfo } from "../experiments/sweep.ts";
import { checkImportedLog, ImportError } from "./import.ts";
import type { AnnotationFields } from "./annotations.ts";
import type { RunExecutor } from "./executor.ts";
import { shardSpec } from "../experiments/shard.ts";

export { TERMINAL };

/** Thrown when a run's estimated device memory exceeds the limit (HTTP 413). */
export class RunTooLargeError extends Error {
  constructor(readonly errors: FieldError[]) {
    super(errors.map((e) => `${e.field}: ${e.message}`).join("; "));
    this.name = "RunTooLargeError";
  }
}

/** Thrown when the queue is full (HTTP 429 with Retry-After). */
export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(
      `the queue is full (${limit} runs waiting); try again when a run has finished ` +
        "(the limit is --max-queued)",
    );
    this.name = "QueueFullError";
  }
}

/** Thrown when the data directory cannot take a new run or a deletion (HTTP 503 / 507). */
export class StoreUnavailableError extends Error {
  constructor(message: string, readonly diskFull = false) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}

export type Resolver = (
  choice: BackendChoice,
  experiment: string,
) => Promise<{ name: BackendName; probe: BackendProbe }>;

export interface RunManagerOptions {
  /** Run logs live in `<dataDir>/runs/`. */
  dataDir: string;
  /** Runs computing at once, per backend. */
  maxConcurrent?: Partial<Record<BackendName, number>>;
  /** Largest estimated device memory of one run, in bytes. */
  memoryLimitBytes?: number;
  /** Largest projected log size of one run, in bytes (default DEFAULT_DISK_LIMIT). */
  diskLimitBytes?: number;
  /** Runs waiting for a backend at once; more are refused (HTTP 429). */
  maxQueued?: number;
  /** In-memory recent records per run, in bytes. */
  ringBytes?: number;
  /** Target compute per kernel call (see driveRun). */
  chunkMs?: number;
  /** Injected in tests; defaults to the real backend selection and worker sessions. */
  resolveBackend?: Resolver;
  openSession?: (spec: RunSpec, state?: SessionState) => Promise<KernelSession>;
  /**
   * Workers one run's replicas are split across (threaded_session.ts; default every core but
   * one). Per run: runs computing at once (maxConcurrent) each get up to this many.
   */
  threads?: number;
  /** Compute time between a running run's checkpoints; 0 turns checkpoints off. */
  checkpointIntervalMs?: number;
  /** Resume runs that were in flight when the previous server stopped (default true). */
  resume?: boolean;
  /**
   * Computes runs elsewhere instead of here (the multi-box coordinator, executor.ts): runs are
   * stored and streamed as always, their records come from the executor, no local limit applies.
   */
  executor?: RunExecutor;
}

export type ManagerEvent =
  | { type: "added"; run: string }
  /** As logged: snapshots may come in blocks (records.ts expandSnapshots). */
  | { type: "records"; run: string; records: LogRecord[] }
  | { type: "removed"; run: string };

interface LiveRun {
  recorder: RunRecorder;
  log: RunLogWriter;
  controller: AbortController;
  done: Promise<void>;
  finish(): void;
  /** Recent records, so nearly caught-up subscribers never read the disk. */
  ring: RecordRing;
}

interface RunEntry {
  id: string;
  header: HeaderRecord;
  backend: BackendName;
  stored: StoredRun;
  live?: LiveRun;
  removed?: boolean;
  /** Set while a resumed run waits in the queue: where its session continues from. */
  resume?: ResumePlan;
  /** Appends to the ended log in progress (annotations), so they land in seq order. */
  appending?: Promise<void>;
  /** Taken up from its log after a restart, computed by the executor (#reattach). */
  reattached?: boolean;
}

const DEFAULT_RING_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_QUEUED = 64;
export const DEFAULT_DISK_LIMIT = 4 * 2 ** 30;
/** Records read back from logs and kept for subscribers catching up, all runs together. */
const READ_CACHE_BYTES = 16 * 2 ** 20;
const READ_AHEAD_BYTES = 2 * 2 ** 20;

/** Runs computing at once per backend by default (the server's --max-concurrent, a worker's --capacity). */
export function defaultConcurrency(): Record<BackendName, number> {
  const cores = navigator.hardwareConcurrency || 2;
  // One GPU run at a time keeps each run's throughput predictable; CPU backends get a core each
  // while leaving one for the server.
  return { webgpu: 1, wasm: Math.max(1, cores - 1), reference: Math.max(1, cores - 1) };
}

/** Half the machine's memory, at most 4 GiB (a wasm32 memory cannot exceed that either). */
export function defaultMemoryLimit(): number {
  let total = 8 * 2 ** 30;
  try {
    total = Deno.systemMemoryInfo().total;
  } catch { /* not permitted: keep the guess */ }
  return Math.min(4 * 2 ** 30, Math.floor(total / 2));
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) n /= 1024, i++;
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export class RunManager {
  readonly runsDir: string;
  readonly memoryLimitBytes: number;
  readonly diskLimitBytes: number;
  readonly maxQueued: number;
  #store: RunStore;
  #opts: RunManagerOptions;
  #limits: Record<BackendName, number>;
  #runs = new Map<string, RunEntry>();
  #queue: string[] = [];
  #running = new Map<BackendName, number>();
  #listeners = new Set<(e: ManagerEvent) => void>();
  #closing = false;
  /** Catalogue entries of runs that just ended, being written (shutdown waits for them). */
  #catalogueWrites = new Set<Promise<void>>();
  #readCache = new ReadCache(READ_CACHE_BYTES);

  private constructor(opts: RunManagerOptions, store: RunStore) {
    this.#opts = opts;
    this.#store = store;
    this.runsDir = store.runsDir;
    this.#limits = { ...defaultConcurrency(), ...opts.maxConcurrent };
    this.memoryLimitBytes = opts.memoryLimitBytes ?? defaultMemoryLimit();
    this.diskLimitBytes = opts.diskLimitBytes ?? DEFAULT_DISK_LIMIT;
    this.maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED;
  }

  /** Opens the data directory and loads every run in it (catalogue entries, not logs). */
  static async open(opts: RunManagerOptions): Promise<RunManager> {
    const m = new RunManager(opts, await RunStore.open(opts.dataDir));
    if (m.readOnly) {
      console.error("the data directory is read-only: runs are served, none can be started");
    }
    await m.#loadAll();
    return m;
  }

  /** True when the data directory cannot be written: runs are served, not started or deleted. */
  get readOnly(): boolean {
    return this.#store.readOnly;
  }

  async #loadAll(): Promise<void> {
    for (const path of await this.#store.logPaths()) {
      try {
        await this.#load(path);
      } catch (e) {
        // One unreadable file must not keep the lab from starting.
        console.error(`skipping ${path}: ${e instanceof Error ? e.message : e}`);
      }
    }
  }

  async #load(path: string): Promise<void> {
    const stored = await this.#store.load(path);
    const h = stored.header;
    if (!RUN_ID_PATTERN.test(h.id) || this.#runs.has(h.id)) {
      throw new Error(`bad or duplicate run id ${JSON.stringify(h.id)}`);
    }
    const entry: RunEntry = { id: h.id, header: h, backend: h.backend as BackendName, stored };
    this.#runs.set(h.id, entry);
    if (TERMINAL.has(stored.state.status) && stored.state.lastSeq > 0) {
      // A graceful shutdown checkpointed the run and marked it `interrupted` to be resumed:
      // it continues like a run a crash left in flight (with --no-resume it waits, by hand).
      const shutDown = stored.state.status === "interrupted" && stored.state.resumeOnStart;
      if (!shutDown || this.#opts.resume === false || this.readOnly) return;
      try {
        await this.#resume(entry, "resumed after a restart");
      } catch (e) {
        console.error(`run ${h.id} cannot resume: ${e instanceof Error ? e.message : e}`);
      }
      return;
    }
    if (endedInDamage(stored, (await Deno.stat(path)).size)) {
      stored.state.status = "finished";
      console.error(`run ${h.id}: its final status record is damaged; it reached its last step`);
      if (!this.readOnly) await this.#store.finish(stored);
      return;
    }
    if (this.#opts.executor && !this.readOnly && h.cluster) {
      try {
        await this.#reattach(entry);
        return;
      } catch (e) {
        console.error(`run ${h.id} cannot be reattached: ${e instanceof Error ? e.message : e}`);
      }
    }
    if (this.#opts.resume !== false && !this.readOnly) {
      try {
        await this.#resume(entry, "resumed after a restart");
        return;
      } catch (e) {
        // Not resumable here (no backend at all, unreadable log): left interrupted below.
        console.error(`run ${h.id} cannot resume: ${e instanceof Error ? e.message : e}`);
      }
    }
    const state = stored.state;
    // In flight when the previous server stopped. Only a torn tail may be dropped (the rest
    // of the file is never cut), and only from a run that was writing.
    const mark: StatusRecord = {
      type: "status",
      seq: state.lastSeq + 1,
      time: Date.now(),
      status: "interrupted",
      step: state.step,
      error: "the server stopped while this run was in flight",
    };
    if (!this.readOnly) {
      try {
        if (stored.tornAt !== undefined) await Deno.truncate(path, stored.tornAt);
        const w = await this.#store.reopen(stored);
        try {
          w.appendSync([mark]);
        } finally {
          w.close();
        }
      } catch (e) {
        console.error(`run ${h.id}: could not mark it interrupted: ${(e as Error).message}`);
      }
    }
    foldRecords(state, [mark]);
    await this.#store.finish(stored);
  }

  /** Reopens a stored run's log for appending and makes the run live (recorder, ring, done). */
  async #reopenLive(entry: RunEntry): Promise<LiveRun> {
    const log = await this.#store.reopen(entry.stored);
    const recorder = new RunRecorder(entry.header, log);
    let finish = () => {};
    const done = new Promise<void>((r) => finish = r);
    const ring = new RecordRing(this.#opts.ringBytes ?? DEFAULT_RING_BYTES);
    entry.live = { recorder, log, controller: new AbortController(), done, finish, ring };
    return entry.live;
  }

  /** Reopens a run's log and queues it to continue from its checkpoint (or step 0). */
  async #resume(entry: RunEntry, how: string): Promise<void> {
    const warn = (m: string) => console.error(`run ${entry.id}: ${m}`);
    // The backend it ran on, when this machine has it; else the best one here (a checkpoint
    // opens on any backend, continuing within the parity tolerances).
    const resolve = this.#opts.resolveBackend ?? resolveBackend;
    const experiment = entry.header.spec.experiment;
    const backend = await resolve(entry.backend, experiment)
      .catch(() => resolve("auto", experiment));
    const plan = await planResume(this.#store, entry.stored, warn);
    if (backend.name !== entry.backend) {
      warn(`${entry.backend} is not available here: continuing on ${backend.name}`);
      entry.backend = backend.name;
    }
    const live = await this.#reopenLive(entry);
    const { recorder, log } = live;
    entry.resume = plan;
    const state = entry.stored.state;
    state.error = undefined;
    state.ended = undefined;
    this.#readCache.drop(entry.id);
    recorder.listen((records) => this.#onRecords(entry, records));
    try {
      startResumed(recorder, plan, how);
    } catch (e) {
      this.#end(entry, live);
      throw e;
    }
    log.suspend(); // a queued run holds no descriptor
    this.#queue.push(entry.id);
    this.#schedule();
  }

  /**
   * Takes up a run an executor was computing when the previous server stopped: its recorder
   * continues the log after its last record, and drops the snapshots, events and frames the
   * executor delivers again that the log already holds (RunRecorder.resumeAfter), so the run's
   * sequence has each record once. Nothing is written here: the run never stopped.
   */
  async #reattach(entry: RunEntry): Promise<void> {
    let lastSeq = 0;
    let lastStep = 0;
    // What resumeAfter compares a regenerated record with: kind, step, name (not the values).
    const stored: BodyRecord[] = [];
    await this.#store.reopenForResume(entry.stored, (r) => {
      lastSeq = r.seq;
      if (r.type === "snapshot") {
        lastStep = r.step;
        stored.push({ ...r, metrics: {} });
      } else if (r.type === "frame") stored.push({ ...r, values: new Float32Array(0) });
      else stored.push(r);
    });
    const live = await this.#reopenLive(entry);
    const { recorder, log } = live;
    recorder.listen((records) => this.#onRecords(entry, records));
    recorder.resumeAfter(lastSeq, lastStep, stored, []);
    recorder.status = entry.stored.state.status;
    entry.reattached = true;
    this.#readCache.drop(entry.id);
    log.suspend();
    this.#queue.push(entry.id);
    this.#schedule();
  }

  /**
   * Resumes an `interrupted` or `failed` run by hand (POST /api/runs/:id/resume). Throws
   * with a message saying why a run cannot be resumed.
   */
  async resume(id: string): Promise<void> {
    const why = this.whyNotResumable(id);
    if (why) throw new Error(why);
    await this.#resume(this.#runs.get(id)!, "resumed by hand");
  }

  /** Why run `id` cannot be resumed by hand now, or undefined if it can. */
  whyNotResumable(id: string): string | undefined {
    if (this.#closing) return "the server is shutting down";
    if (this.readOnly) return "the data directory is read-only";
    const e = this.#runs.get(id);
    if (!e) return `no run with id ${JSON.stringify(id)}`;
    const status = e.stored.state.status;
    if (e.live || (status !== "interrupted" && status !== "failed")) {
      return `run ${id} is ${status}: only interrupted or failed runs can be resumed`;
    }
    if (this.#opts.executor) return "runs computed by workers cannot be resumed by hand yet";
    return undefined;
  }

  listen(fn: (e: ManagerEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #notify(e: ManagerEvent): void {
    for (const fn of this.#listeners) {
      try {
        fn(e);
      } catch (err) {
        console.error("run manager listener failed:", err);
      }
    }
  }

  /** Checks the spec's device-memory estimate against the limit, before anything is allocated. */
  checkMemory(spec: RunSpec): void {
    const need = getExperiment(spec.experiment).estimateBytes(spec);
    if (need > this.memoryLimitBytes) {
      throw new RunTooLargeError([{
        field: "replicas",
        message: `the run needs about ${formatBytes(need)} of device memory, more than the ${
          formatBytes(this.memoryLimitBytes)
        } limit; lower replicas (now ${spec.replicas}${
          spec.sweep
            ? `: ${spec.replicas / spec.sweep.seeds} settings × ${spec.sweep.seeds} seeds`
            : ""
        }) or the problem size (params)`,
      }]);
    }
  }

  /** Checks the projected size of the run's log against the disk limit. */
  checkDisk(spec: RunSpec): void {
    const need = projectLogBytes(spec);
    if (need > this.diskLimitBytes) {
      throw new RunTooLargeError([{
        field: "steps",
        message: `the run's log would take about ${formatBytes(need)} of disk, more than the ${
          formatBytes(this.diskLimitBytes)
        } limit (--max-run-disk-mb); raise every (now ${spec.every}), or lower steps (now ${spec.steps}) or replicas (now ${spec.replicas})`,
      }]);
    }
  }

  /**
   * Validates and queues a run; returns its id. Throws SpecError (bad fields),
   * RunTooLargeError (memory, disk), BackendUnavailableError (backend), QueueFullError or
   * StoreUnavailableError, all before computing anything.
   */
  async submit(input: unknown): Promise<string> {
    if (this.#closing) throw new StoreUnavailableError("the server is shutting down");
    if (this.readOnly) {
      throw new StoreUnavailableError(
        "the data directory is read-only: runs are served but no new run can be started",
      );
    }
    if (this.#queue.length >= this.maxQueued) throw new QueueFullError(this.maxQueued);
    const spec = validateRunSpec(input);
    const executor = this.#opts.executor;
    if (!executor) this.checkMemory(spec);
    this.checkDisk(spec);
    let name: BackendName;
    let adapter: string;
    let shards: { first: number; count: number }[] | undefined;
    if (executor) {
      const admitted = await executor.admit(spec);
      name = admitted.backend as BackendName;
      adapter = admitted.adapter;
      shards = admitted.shards;
      // Each shard is computed on one box: the largest one must fit the limit.
      const largest = shards ? Math.max(...shards.map((s) => s.count)) : spec.replicas;
      this.checkMemory(largest < spec.replicas ? shardSpec(spec, 0, largest) : spec);
    } else {
      const resolve = this.#opts.resolveBackend ?? resolveBackend;
      const { name: resolved, probe } = await resolve(spec.backend, spec.experiment);
      name = resolved;
      adapter = probe.adapter;
    }
    if (this.#queue.length >= this.maxQueued) throw new QueueFullError(this.maxQueued);
    const id = newRunId(spec.experiment);
    const header = newRunHeader(id, spec, name, adapter);
    if (shards) header.cluster = { shards };
    let created;
    try {
      created = await this.#store.create(header);
    } catch (e) {
      if (e instanceof RunLogWriteError) throw new StoreUnavailableError(e.message, e.diskFull);
      throw e;
    }
    const { run: stored, writer: log } = created;
    const entry: RunEntry = { id, header, backend: name, stored };
    const recorder = new RunRecorder(header, log);
    let finish = () => {};
    const done = new Promise<void>((r) => finish = r);
    const ring = new RecordRing(this.#opts.ringBytes ?? DEFAULT_RING_BYTES);
    entry.live = { recorder, log, controller: new AbortController(), done, finish, ring };
    recorder.listen((records) => this.#onRecords(entry, records));
    this.#runs.set(id, entry);
    this.#notify({ type: "added", run: id });
    try {
      recorder.setStatus("queued");
    } catch (e) {
      // The disk filled between the header and this record: the run is over already.
      this.#end(entry, entry.live);
      if (e instanceof RunLogWriteError) return id;
      throw e;
    }
    log.suspend(); // a queued run holds no descriptor
    this.#queue.push(id);
    this.#schedule();
    return id;
  }

  #onRecords(entry: RunEntry, records: LogRecord[]): void {
    if (entry.removed) return;
    foldRecords(entry.stored.state, records);
    entry.live?.ring.push(records);
    this.#notify({ type: "records", run: entry.id, records });
  }

  /** A run's last record is written: close its log, keep only its summary in memory. */
  #end(e: RunEntry, live: LiveRun): void {
    live.log.close();
    if (e.live === live) e.live = undefined;
    live.finish();
    // Not awaited here (a failure only costs a rebuild on the next start), but shutdown waits
    // for it: the data directory is complete when shutdown() resolves.
    const write = this.#store.finish(e.stored).catch(() => {});
    this.#catalogueWrites.add(write);
    write.finally(() => this.#catalogueWrites.delete(write));
    relieveMemorySoon();
  }

  #schedule(): void {
    if (this.#closing) return;
    for (let i = 0; i < this.#queue.length;) {
      const e = this.#runs.get(this.#queue[i]);
      if (!e?.live) {
        this.#queue.splice(i, 1);
        continue;
      }
      const busy = this.#running.get(e.backend) ?? 0;
      // An executor queues runs its own way (workers pull jobs up to their capacity).
      if (this.#opts.executor || busy < (this.#limits[e.backend] ?? 1)) {
        this.#queue.splice(i, 1);
        this.#running.set(e.backend, busy + 1);
        this.#execute(e, e.live).catch((err) => console.error(`run ${e.id}:`, err));
      } else i++;
    }
  }

  async #execute(e: RunEntry, live: LiveRun): Promise<void> {
    if (this.#opts.executor) return await this.#executeElsewhere(this.#opts.executor, e, live);
    const spec = { ...e.header.spec, backend: e.backend };
    const signal = live.controller.signal;
    const plan = e.resume;
    e.resume = undefined;
    const ckptPath = checkpointPathFor(e.stored.path);
    const interval = this.#opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    let session: KernelSession | undefined;
    try {
      try {
        const threads = this.#opts.threads ?? defaultServerThreads();
        const open = this.#opts.openSession ??
          ((s: RunSpec, st?: SessionState) => openThreadedSession(s, st, { threads }));
        session = await open(spec, plan?.checkpoint?.state);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        setStatusQuietly(
          live.recorder,
          signal.aborted ? "stopped" : "failed",
          signal.aborted ? undefined : `could not start the ${e.backend} backend: ${msg}`,
        );
        return;
      }
      if (signal.aborted) {
        setStatusQuietly(live.recorder, "stopped");
        return;
      }
      const result = await driveRun(session, e.header.spec, live.recorder, {
        chunkMs: this.#opts.chunkMs,
        signal,
        checkpoint: interval > 0
          ? { intervalMs: interval, save: (c) => saveRunCheckpoint(ckptPath, e.id, c) }
          : undefined,
        resume: plan ? { diverged: plan.checkpoint?.diverged ?? [] } : undefined,
      });
      // A finished or stopped run is not resumed: its checkpoint goes.
      if (result.status === "finished" || result.status === "stopped") {
        await removeCheckpoint(ckptPath);
      }
    } catch (err) {
      // driveRun reports kernel and write errors itself; this is a bug in the plumbing, logged.
      console.error(`run ${e.id}:`, err);
      if (!TERMINAL.has(e.stored.state.status)) {
        try {
          live.recorder.setStatus("failed", String(err));
        } catch { /* the log cannot take it: the recorder has delivered `failed` itself */ }
      }
    } finally {
      try {
        await session?.dispose();
      } catch { /* the worker is going away anyway */ }
      this.#running.set(e.backend, (this.#running.get(e.backend) ?? 1) - 1);
      this.#end(e, live);
      this.#schedule();
    }
  }

  /** A run computed by the executor: its records arrive through the recorder as usual. */
  async #executeElsewhere(executor: RunExecutor, e: RunEntry, live: LiveRun): Promise<void> {
    const reattached = e.reattached ?? false;
    e.reattached = undefined;
    const store = this.#store;
    try {
      await executor.execute({
        id: e.id,
        header: e.header,
        recorder: live.recorder,
        signal: live.controller.signal,
        reattached,
        records: async function* () {
          for await (const { record } of store.iterate(e.stored)) yield record;
        },
      });
    } catch (err) {
      console.error(`run ${e.id}:`, err);
      if (!TERMINAL.has(e.stored.state.status)) {
        setStatusQuietly(live.recorder, "failed", err instanceof Error ? err.message : String(err));
      }
    } finally {
      this.#running.set(e.backend, (this.#running.get(e.backend) ?? 1) - 1);
      this.#end(e, live);
      this.#schedule();
    }
  }

  has(id: string): boolean {
    return this.#runs.has(id);
  }

  ids(): string[] {
    return [...this.#runs.keys()];
  }

  header(id: string): HeaderRecord | undefined {
    return this.#runs.get(id)?.header;
  }

  lastSeq(id: string): number {
    return this.#runs.get(id)?.stored.state.lastSeq ?? 0;
  }

  status(id: string): RunStatus | undefined {
    return this.#runs.get(id)?.stored.state.status;
  }

  step(id: string): number {
    return this.#runs.get(id)?.stored.state.step ?? 0;
  }

  /**
   * How an ended run ended, from its summary (undefined while it is not ended): what a
   * subscriber is told when the log's copy of the final status is damaged.
   */
  ending(
    id: string,
  ): { status: RunStatus; step: number; error?: string; statusSeq?: number } | undefined {
    const st = this.#runs.get(id)?.stored.state;
    if (!st || !TERMINAL.has(st.status)) return undefined;
    return {
      status: st.status,
      step: st.step,
      ...(st.error ? { error: st.error } : {}),
      ...(st.statusSeq !== undefined ? { statusSeq: st.statusSeq } : {}),
    };
  }

  /** Runs queued or computing. */
  inFlight(): number {
    let n = 0;
    for (const e of this.#runs.values()) if (e.live) n++;
    return n;
  }

  queued(): number {
    return this.#queue.length;
  }

  summaries(): RunSummary[] {
    return [...this.#runs.values()]
      .sort((a, b) => a.header.created.localeCompare(b.header.created))
      .map(summary);
  }

  runSummary(id: string): RunSummary | undefined {
    const e = this.#runs.get(id);
    return e ? summary(e) : undefined;
  }

  async detail(id: string): Promise<RunDetail | undefined> {
    const e = this.#runs.get(id);
    if (!e) return undefined;
    const latest = e.live?.recorder.latest ?? await this.#store.latest(e.stored);
    const state = e.stored.state;
    return {
      ...summary(e),
      code_version: e.header.code_version,
      metrics: e.header.metrics,
      frames: e.header.frames,
      latest: latest
        ? {
          step: latest.step,
          wall_ms: latest.wall_ms,
          time: latest.time,
          metrics: latest.metrics,
        }
        : null,
      events: state.events.map((r) => ({ seq: r.seq, time: r.time, ...r.event })),
      events_total: state.eventCount,
      path: e.stored.path,
    };
  }

  /** The path of a run's log (for the log download; never sent to clients). */
  logPath(id: string): string | undefined {
    return this.#runs.get(id)?.stored.path;
  }

  /** Up to `max` records after seq `after` if the ring still holds them, else undefined. */
  readAfterSync(id: string, after: number, max = Infinity): BodyRecord[] | undefined {
    const e = this.#runs.get(id);
    if (!e || after >= e.stored.state.lastSeq) return [];
    return e.live?.ring.after(after, max);
  }

  /**
   * Up to `max` records after seq `after`, from memory or the run log: from the log, at most a
   * stretch of about 2 MiB per call (fewer than asked is not the end; ask again after them).
   */
  async readAfter(id: string, after: number, max = Infinity): Promise<BodyRecord[]> {
    const fast = this.readAfterSync(id, after, max);
    if (fast) return fast;
    const cached = this.#readCache.get(id, after, max);
    if (cached) return cached;
    const e = this.#runs.get(id)!;
    // Read a stretch ahead (about 2 MiB) so the next asks are served from the cache.
    const perRecord = 128 + 12 * e.header.metrics.length * e.header.spec.replicas;
    const ahead = Math.max(64, Math.floor(READ_AHEAD_BYTES / perRecord));
    // At most that from disk per call, even for "everything after": the caller asks again.
    const limit = Math.min(
      Number.isFinite(max) ? Math.max(max, ahead) : ahead,
      e.stored.state.lastSeq - after,
    );
    const records = await this.#store.readAfter(e.stored, after, limit);
    if (this.#runs.get(id) === e) this.#readCache.put(id, records);
    return records.slice(0, max);
  }

  /** History of a run over a step range (see RunIndexReader.history). */
  async history(id: string, q: HistoryQuery): Promise<Decimated | undefined> {
    const e = this.#runs.get(id);
    if (!e) return undefined;
    return await this.#store.history(e.stored, q);
  }

  /** A run's snapshots as CSV (export.ts), in chunks of about 64 KiB, streamed from the log. */
  async *csv(id: string): AsyncGenerator<string> {
    const e = this.#runs.get(id);
    if (!e) return;
    const store = this.#store;
    const records = async function* () {
      for await (const { record } of store.iterate(e.stored, undefined, true)) yield record;
    };
    yield* csvChunks(e.header, records(), e.stored.state.lastSeq);
  }

  /** Every record of a run in seq order. Small runs and tests only: it holds them all. */
  async allRecords(id: string): Promise<BodyRecord[]> {
    const e = this.#runs.get(id);
    if (!e) return [];
    const out: BodyRecord[] = [];
    for await (const { record } of this.#store.iterate(e.stored)) out.push(record);
    return out;
  }

  /** Adds a run log made elsewhere as a run of this lab (server/runs/import.ts); its id. */
  async import(bytes: Uint8Array): Promise<string> {
    if (this.#closing) throw new StoreUnavailableError("the server is shutting down");
    if (this.readOnly) {
      throw new StoreUnavailableError("the data directory is read-only: runs cannot be imported");
    }
    const { header, records } = checkImportedLog(bytes, (id) => this.#runs.has(id));
    let stored;
    try {
      stored = await this.#store.write(header, records);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) {
        throw new ImportError(`run ${header.id} already exists on this lab`, 409);
      }
      if (e instanceof RunLogWriteError) throw new StoreUnavailableError(e.message, e.diskFull);
      throw e;
    }
    // As at start-up: a run that never ended is resumed, or marked interrupted.
    await this.#load(stored.path);
    this.#notify({ type: "added", run: header.id });
    return header.id;
  }

  /** Renames, retags or annotates a run, live or ended (server/runs/annotations.ts). */
  async annotate(id: string, fields: AnnotationFields): Promise<boolean> {
    const e = this.#runs.get(id);
    if (!e) return false;
    const live = e.live;
    if (live && !TERMINAL.has(live.recorder.status)) {
      live.recorder.emit([{ type: "annotation", time: Date.now(), ...fields }]);
      return true;
    }
    if (this.readOnly) {
      throw new StoreUnavailableError("the data directory is read-only: runs cannot be changed");
    }
    // A run ending now: its writer closes first, then the annotation follows its last record.
    if (live) await live.done;
    const previous = e.appending ?? Promise.resolve();
    const write = previous.then(async () => {
      if (e.removed) return;
      const record = {
        type: "annotation" as const,
        seq: e.stored.state.lastSeq + 1,
        time: Date.now(),
        ...fields,
      };
      try {
        await this.#store.appendEnded(e.stored, [record]);
      } catch (err) {
        if (err instanceof RunLogWriteError) {
          throw new StoreUnavailableError(err.message, err.diskFull);
        }
        throw err;
      }
      this.#readCache.drop(id);
      this.#notify({ type: "records", run: id, records: [record] });
    });
    e.appending = write.catch(() => {});
    await write;
    return true;
  }

  /** Stops a queued or running run. Returns false if it had already ended. */
  async stop(id: string, waitMs = 2000): Promise<boolean> {
    const e = this.#runs.get(id);
    const live = e?.live;
    if (!e || !live) return false;
    const queuedAt = this.#queue.indexOf(id);
    if (queuedAt >= 0) {
      this.#queue.splice(queuedAt, 1);
      setStatusQuietly(live.recorder, "stopped");
      this.#end(e, live);
      return true;
    }
    live.controller.abort();
    // The driver stops between kernel calls (about chunkMs apart); don't hold the request long.
    await Promise.race([live.done, new Promise((r) => setTimeout(r, waitMs))]);
    return true;
  }

  /**
   * Deletes a run and its log, stopping it first if needed. If the log cannot be deleted the
   * run stays listed and StoreUnavailableError is thrown.
   */
  async remove(id: string): Promise<boolean> {
    const e = this.#runs.get(id);
    if (!e) return false;
    if (this.readOnly) {
      throw new StoreUnavailableError("the data directory is read-only: runs cannot be deleted");
    }
    const live = e.live;
    if (live) {
      const queuedAt = this.#queue.indexOf(id);
      if (queuedAt >= 0) {
        this.#queue.splice(queuedAt, 1);
        setStatusQuietly(live.recorder, "stopped");
        this.#end(e, live);
      } else {
        live.controller.abort();
        await Promise.race([live.done, new Promise((r) => setTimeout(r, 5000))]);
      }
    }
    try {
      await this.#store.remove(e.stored);
    } catch (err) {
      if (err instanceof RunLogWriteError) throw new StoreUnavailableError(err.message);
      throw err;
    }
    await removeCheckpoint(checkpointPathFor(e.stored.path));
    e.removed = true;
    this.#runs.delete(id);
    this.#readCache.drop(id);
    this.#notify({ type: "removed", run: id });
    return true;
  }

  /**
   * Graceful stop of the whole lab: computing runs write a checkpoint at their next call
   * boundary and an `interrupted` record (the driver, on a SHUTDOWN abort); queued runs, and
   * runs that do not stop within 5 s, get the `interrupted` record here. The next start
   * resumes them all.
   */
  async shutdown(): Promise<void> {
    this.#closing = true;
    const waits: Promise<void>[] = [];
    // Marked to be resumed by the next start, like a run a crash left in flight.
    const interrupt = (live: LiveRun) =>
      setStatusQuietly(
        live.recorder,
        "interrupted",
        "the server was shut down while this run was in flight",
        true,
      );
    for (const e of this.#runs.values()) {
      const live = e.live;
      if (!live) continue;
      if (this.#queue.includes(e.id) && !this.#opts.executor) {
        interrupt(live);
        this.#end(e, live);
      } else {
        live.controller.abort(SHUTDOWN);
        waits.push(live.done);
      }
    }
    this.#queue = [];
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 5000))]);
    for (const e of this.#runs.values()) {
      const live = e.live;
      if (!live) continue;
      // A run computed elsewhere goes on there: the next start reattaches it, so no mark.
      if (!this.#opts.executor) interrupt(live);
      live.log.close();
    }
    await Promise.all(this.#catalogueWrites);
  }
}

export interface RunSummary {
  id: string;
  experiment: string;
  status: RunStatus;
  step: number;
  steps: number;
  progress: number;
  backend: string;
  adapter: string;
  created: string;
  started?: string;
  ended?: string;
  spec: RunSpec;
  last_seq: number;
  error?: string;
  /** Present when the log has damaged records: how many, and their byte ranges (skipped). */
  damaged?: DamageReport;
  name?: string;
  tags: string[];
  note?: string;
  sweep?: SweepInfo;
}

export interface RunDetail extends RunSummary {
  code_version: string;
  metrics: string[];
  frames: string[];
  latest: {
    step: number;
    wall_ms: number;
    time: number;
    metrics: Record<string, Float32Array>;
  } | null;
  events: Array<Record<string, unknown>>;
  events_total: number;
  path: string;
}

function summary(e: RunEntry): RunSummary {
  const steps = e.header.spec.steps;
  const st = e.stored.state;
  const damaged = damageReport(st);
  return {
    id: e.id,
    experiment: e.header.spec.experiment,
    status: st.status,
    step: st.step,
    steps,
    progress: steps > 0 ? Math.min(1, st.step / steps) : 1,
    backend: e.header.backend,
    adapter: e.header.adapter,
    created: e.header.created,
    ...(st.started ? { started: new Date(st.started).toISOString() } : {}),
    ...(st.ended ? { ended: new Date(st.ended).toISOString() } : {}),
    spec: e.header.spec,
    last_seq: st.lastSeq,
    ...(st.error ? { error: st.error } : {}),
    ...(damaged ? { damaged } : {}),
    ...st.labels,
    ...(e.header.sweep ? { sweep: e.header.sweep } : {}),
  };
}

/** Sets a status where the log may already be unwritable (the recorder then ends the run). */
function setStatusQuietly(
  recorder: RunRecorder,
  status: RunStatus,
  error?: string,
  resumeOnStart = false,
): void {
  try {
    recorder.setStatus(status, error, resumeOnStart);
  } catch (e) {
    if (!(e instanceof RunLogWriteError)) throw e;
  }
}
