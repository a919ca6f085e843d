/**
 * The server's runs: validation and the memory check at submission, a queue with a
 * concurrency limit per backend, kernels in a Worker (openWorkerSession) so the event loop
 * stays free for HTTP and streams, one append-only run log per run under `<data>/runs/`, and a
 * ring of recent records per run so subscribers that are nearly caught up never touch the
 * disk. On start it reads every log back: finished runs are listed and replayable in full;
 * runs that were queued or running when the previous server stopped are resumed from their
 * checkpoint (server/runs/resume.ts), or with `resume: false` get an `interrupted` status
 * record appended. Running runs checkpoint themselves every `checkpointIntervalMs`.
 */
import { join } from "node:path";
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
import { openWorkerSession } from "../engine/worker_session.ts";
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
import {
  type BodyRecord,
  type EventRecord,
  type HeaderRecord,
  type RunStatus,
  type SnapshotRecord,
  type StatusRecord,
} from "./records.ts";
import { readRunLog, RUNLOG_SUFFIX, RunLogWriter } from "./runlog.ts";
import { RecordRing } from "./ring.ts";
import { newRunHeader } from "./header.ts";
import type { SweepInfo } from "../experiments/sweep.ts";
import { checkImportedLog, ImportError, writeImportedLog } from "./import.ts";
import {
  type AnnotationFields,
  appendToEndedLog,
  applyAnnotation,
  labelsOfSpec,
  type RunLabels,
} from "./annotations.ts";

export const TERMINAL: ReadonlySet<RunStatus> = new Set([
  "finished",
  "failed",
  "stopped",
  "interrupted",
]);

/** Thrown when a run's estimated device memory exceeds the limit (HTTP 413). */
export class RunTooLargeError extends Error {
  constructor(readonly errors: FieldError[]) {
    super(errors.map((e) => `${e.field}: ${e.message}`).join("; "));
    this.name = "RunTooLargeError";
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
  /** In-memory recent records per run, in bytes. */
  ringBytes?: number;
  /** Target compute per kernel call (see driveRun). */
  chunkMs?: number;
  /** Injected in tests; defaults to the real backend selection and worker sessions. */
  resolveBackend?: Resolver;
  openSession?: (spec: RunSpec, state?: SessionState) => Promise<KernelSession>;
  /** Compute time between a running run's checkpoints; 0 turns checkpoints off. */
  checkpointIntervalMs?: number;
  /** Resume runs that were in flight when the previous server stopped (default true). */
  resume?: boolean;
}

export type ManagerEvent =
  | { type: "added"; run: string }
  | { type: "records"; run: string; records: BodyRecord[] }
  | { type: "removed"; run: string };

interface LiveRun {
  recorder: RunRecorder;
  log: RunLogWriter;
  controller: AbortController;
  done: Promise<void>;
  finish(): void;
}

interface RunEntry {
  id: string;
  header: HeaderRecord;
  backend: BackendName;
  path: string;
  status: RunStatus;
  step: number;
  lastSeq: number;
  latest?: SnapshotRecord;
  /** The most recent events (bounded), for the run detail view. */
  events: EventRecord[];
  eventCount: number;
  error?: string;
  started?: number;
  ended?: number;
  ring: RecordRing;
  live?: LiveRun;
  removed?: boolean;
  labels: RunLabels;
  /** Set while a resumed run waits in the queue: where its session continues from. */
  resume?: ResumePlan;
}

const MAX_EVENTS_KEPT = 1000;
const DEFAULT_RING_BYTES = 4 * 1024 * 1024;
/** Parsed logs kept for history and replay requests, most recently used first. */
const LOG_CACHE_ENTRIES = 4;

function defaultConcurrency(): Record<BackendName, number> {
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

function absorb(e: RunEntry, records: BodyRecord[]): void {
  for (const r of records) {
    e.lastSeq = r.seq;
    if (r.type === "snapshot") {
      e.latest = r;
      e.step = r.step;
    } else if (r.type === "event") {
      e.events.push(r);
      e.eventCount++;
      if (e.events.length > MAX_EVENTS_KEPT) e.events.shift();
    } else if (r.type === "status") {
      e.status = r.status;
      if (r.status === "running") e.started = r.time;
      if (TERMINAL.has(r.status)) e.ended = r.time;
      if (r.error) e.error = r.error;
    } else if (r.type === "annotation") applyAnnotation(e.labels, r);
  }
}

export class RunManager {
  readonly runsDir: string;
  readonly memoryLimitBytes: number;
  #opts: RunManagerOptions;
  #limits: Record<BackendName, number>;
  #runs = new Map<string, RunEntry>();
  #queue: string[] = [];
  #running = new Map<BackendName, number>();
  #listeners = new Set<(e: ManagerEvent) => void>();
  #logCache = new Map<string, BodyRecord[]>();
  #closing = false;

  private constructor(opts: RunManagerOptions) {
    this.#opts = opts;
    this.runsDir = join(opts.dataDir, "runs");
    this.#limits = { ...defaultConcurrency(), ...opts.maxConcurrent };
    this.memoryLimitBytes = opts.memoryLimitBytes ?? defaultMemoryLimit();
  }

  /** Opens the data directory and loads every run log in it. */
  static async open(opts: RunManagerOptions): Promise<RunManager> {
    const m = new RunManager(opts);
    await Deno.mkdir(m.runsDir, { recursive: true });
    await m.#loadAll();
    return m;
  }

  async #loadAll(): Promise<void> {
    const names: string[] = [];
    for await (const f of Deno.readDir(this.runsDir)) {
      if (f.isFile && f.name.endsWith(RUNLOG_SUFFIX)) names.push(f.name);
    }
    for (const name of names.sort()) {
      const path = join(this.runsDir, name);
      try {
        await this.#load(path);
      } catch (e) {
        // One unreadable file must not keep the lab from starting.
        console.error(`skipping ${path}: ${e instanceof Error ? e.message : e}`);
      }
    }
  }

  async #load(path: string): Promise<void> {
    const log = await readRunLog(path);
    const h = log.header;
    if (!RUN_ID_PATTERN.test(h.id) || this.#runs.has(h.id)) {
      throw new Error(`bad or duplicate run id ${JSON.stringify(h.id)}`);
    }
    const entry = this.#newEntry(h, path);
    // The ring stays empty: runs loaded from disk are replayed from their log.
    absorb(entry, log.records);
    if (
      (!TERMINAL.has(entry.status) || log.records.length === 0) && this.#opts.resume !== false
    ) {
      this.#runs.set(h.id, entry);
      try {
        await this.#resume(entry, "resumed after a restart");
        return;
      } catch (e) {
        // Not resumable here (no backend at all, unreadable log): left interrupted below.
        console.error(`run ${h.id} cannot resume: ${e instanceof Error ? e.message : e}`);
      }
    }
    if (!TERMINAL.has(entry.status) || log.records.length === 0) {
      if (log.truncated) await Deno.truncate(path, log.validBytes);
      const mark: StatusRecord = {
        type: "status",
        seq: entry.lastSeq + 1,
        time: Date.now(),
        status: "interrupted",
        step: entry.step,
        error: "the server stopped while this run was in flight",
      };
      const w = await RunLogWriter.append(path);
      try {
        w.appendSync([mark]);
      } finally {
        w.close();
      }
      absorb(entry, [mark]);
    }
    this.#runs.set(h.id, entry);
  }

  #newEntry(header: HeaderRecord, path: string): RunEntry {
    return {
      id: header.id,
      header,
      backend: header.backend as BackendName,
      path,
      status: "queued",
      step: 0,
      lastSeq: 0,
      events: [],
      eventCount: 0,
      ring: new RecordRing(this.#opts.ringBytes ?? DEFAULT_RING_BYTES),
      labels: labelsOfSpec(header.spec),
    };
  }

  /** Reopens a run's log and queues it to continue from its checkpoint (or step 0). */
  async #resume(entry: RunEntry, how: string): Promise<void> {
    const warn = (m: string) => console.error(`run ${entry.id}: ${m}`);
    const plan = await planResume(entry.path, warn);
    // The backend it ran on, when this machine has it; else the best one here (a checkpoint
    // opens on any backend, continuing within the parity tolerances).
    const resolve = this.#opts.resolveBackend ?? resolveBackend;
    const experiment = entry.header.spec.experiment;
    const backend = await resolve(entry.backend, experiment)
      .catch(() => resolve("auto", experiment));
    if (backend.name !== entry.backend) {
      warn(`${entry.backend} is not available here: continuing on ${backend.name}`);
      entry.backend = backend.name;
    }
    const log = await RunLogWriter.append(entry.path);
    const recorder = new RunRecorder(entry.header, log);
    let finish = () => {};
    const done = new Promise<void>((r) => finish = r);
    entry.live = { recorder, log, controller: new AbortController(), done, finish };
    entry.resume = plan;
    entry.error = undefined;
    entry.ended = undefined;
    recorder.listen((records) => this.#onRecords(entry, records));
    startResumed(recorder, plan, how);
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
    const e = this.#runs.get(id);
    if (!e) return `no run with id ${JSON.stringify(id)}`;
    if (e.live || (e.status !== "interrupted" && e.status !== "failed")) {
      return `run ${id} is ${e.status}: only interrupted or failed runs can be resumed`;
    }
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

  /**
   * Validates and queues a run; returns its id. Throws SpecError (bad fields),
   * RunTooLargeError (memory) or BackendUnavailableError (backend), all before allocating.
   */
  async submit(input: unknown): Promise<string> {
    if (this.#closing) throw new Error("the server is shutting down");
    const spec = validateRunSpec(input);
    this.checkMemory(spec);
    const resolve = this.#opts.resolveBackend ?? resolveBackend;
    const { name, probe } = await resolve(spec.backend, spec.experiment);
    const id = newRunId(spec.experiment);
    const header = newRunHeader(id, spec, name, probe.adapter);
    const path = join(this.runsDir, id + RUNLOG_SUFFIX);
    const log = await RunLogWriter.create(path, header);
    const entry = this.#newEntry(header, path);
    const recorder = new RunRecorder(header, log);
    let finish = () => {};
    const done = new Promise<void>((r) => finish = r);
    entry.live = { recorder, log, controller: new AbortController(), done, finish };
    recorder.listen((records) => this.#onRecords(entry, records));
    this.#runs.set(id, entry);
    this.#notify({ type: "added", run: id });
    recorder.setStatus("queued");
    this.#queue.push(id);
    this.#schedule();
    return id;
  }

  #onRecords(entry: RunEntry, records: BodyRecord[]): void {
    if (entry.removed) return;
    absorb(entry, records);
    entry.ring.push(records);
    this.#notify({ type: "records", run: entry.id, records });
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
      if (busy < (this.#limits[e.backend] ?? 1)) {
        this.#queue.splice(i, 1);
        this.#running.set(e.backend, busy + 1);
        this.#execute(e, e.live).catch((err) => console.error(`run ${e.id}:`, err));
      } else i++;
    }
  }

  async #execute(e: RunEntry, live: LiveRun): Promise<void> {
    const spec = { ...e.header.spec, backend: e.backend };
    const signal = live.controller.signal;
    const plan = e.resume;
    e.resume = undefined;
    const ckptPath = checkpointPathFor(e.path);
    const interval = this.#opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    let session: KernelSession | undefined;
    try {
      try {
        const open = this.#opts.openSession ?? openWorkerSession;
        session = await open(spec, plan?.checkpoint?.state);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        live.recorder.setStatus(
          signal.aborted ? "stopped" : "failed",
          signal.aborted ? undefined : `could not start the ${e.backend} backend: ${msg}`,
        );
        return;
      }
      if (signal.aborted) {
        live.recorder.setStatus("stopped");
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
      // driveRun reports kernel errors itself; this is a bug in the plumbing, logged.
      console.error(`run ${e.id}:`, err);
      if (!TERMINAL.has(e.status)) live.recorder.setStatus("failed", String(err));
    } finally {
      try {
        await session?.dispose();
      } catch { /* the worker is going away anyway */ }
      live.log.close();
      e.live = undefined;
      this.#running.set(e.backend, (this.#running.get(e.backend) ?? 1) - 1);
      live.finish();
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
    return this.#runs.get(id)?.lastSeq ?? 0;
  }

  status(id: string): RunStatus | undefined {
    return this.#runs.get(id)?.status;
  }

  step(id: string): number {
    return this.#runs.get(id)?.step ?? 0;
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

  detail(id: string): RunDetail | undefined {
    const e = this.#runs.get(id);
    if (!e) return undefined;
    return {
      ...summary(e),
      code_version: e.header.code_version,
      metrics: e.header.metrics,
      frames: e.header.frames,
      latest: e.latest
        ? {
          step: e.latest.step,
          wall_ms: e.latest.wall_ms,
          time: e.latest.time,
          metrics: e.latest.metrics,
        }
        : null,
      events: e.events.map((r) => ({ seq: r.seq, time: r.time, ...r.event })),
      events_total: e.eventCount,
      path: e.path,
    };
  }

  /** Up to `max` records after seq `after` if the ring still holds them, else undefined. */
  readAfterSync(id: string, after: number, max = Infinity): BodyRecord[] | undefined {
    const e = this.#runs.get(id);
    if (!e || after >= e.lastSeq) return [];
    return e.ring.after(after, max);
  }

  /** Up to `max` records after seq `after`, from memory or the run log. */
  async readAfter(id: string, after: number, max = Infinity): Promise<BodyRecord[]> {
    const fast = this.readAfterSync(id, after, max);
    if (fast) return fast;
    const all = await this.allRecords(id);
    // Seqs are 1, 2, 3, … so record seq s sits at index s − 1; checked in case of a gap.
    let start = Math.max(0, Math.min(after, all.length));
    if (all[start] && all[start].seq !== after + 1) start = all.findIndex((r) => r.seq > after);
    if (start < 0) return [];
    return all.slice(start, Math.min(all.length, start + max));
  }

  /** Every record of a run in seq order: the log on disk, topped up from the ring. */
  async allRecords(id: string): Promise<BodyRecord[]> {
    const e = this.#runs.get(id);
    if (!e) return [];
    let cached = this.#logCache.get(id);
    const cachedLast = cached?.length ? cached[cached.length - 1].seq : 0;
    if (cached && cachedLast < e.lastSeq) {
      const tail = e.ring.after(cachedLast);
      if (tail) cached.push(...tail);
      else cached = undefined;
    }
    if (!cached) {
      const log = await readRunLog(e.path);
      cached = log.records;
      // A live run may have moved on while the file was read; the ring has the rest.
      const last = cached.length ? cached[cached.length - 1].seq : 0;
      const tail = e.ring.after(last);
      if (tail) cached.push(...tail);
      if (!this.#runs.has(id)) return cached; // removed meanwhile: do not cache
    }
    this.#logCache.delete(id);
    this.#logCache.set(id, cached);
    while (this.#logCache.size > LOG_CACHE_ENTRIES) {
      this.#logCache.delete(this.#logCache.keys().next().value!);
    }
    return cached;
  }

  /** Adds a run log made elsewhere as a run of this lab (server/runs/import.ts); its id. */
  async import(bytes: Uint8Array): Promise<string> {
    const { header, records } = checkImportedLog(bytes, (id) => this.#runs.has(id));
    const path = join(this.runsDir, header.id + RUNLOG_SUFFIX);
    try {
      await writeImportedLog(path, header, records);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) {
        throw new ImportError(`run ${header.id} already exists on this lab`, 409);
      }
      throw e;
    }
    await this.#load(path); // as at start-up: a run that never ended is marked interrupted
    this.#notify({ type: "added", run: header.id });
    return header.id;
  }

  /** Renames, retags or annotates a run, live or ended (server/runs/annotations.ts). */
  async annotate(id: string, fields: AnnotationFields): Promise<boolean> {
    const e = this.#runs.get(id);
    if (!e) return false;
    if (e.live) e.live.recorder.emit([{ type: "annotation", time: Date.now(), ...fields }]);
    else {
      const record = {
        type: "annotation" as const,
        seq: e.lastSeq + 1,
        time: Date.now(),
        ...fields,
      };
      // Taken in order before the write, so two quick edits cannot get the same seq.
      this.#onRecords(e, [record]);
      await appendToEndedLog(e.path, record);
    }
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
      live.recorder.setStatus("stopped");
      live.log.close();
      e.live = undefined;
      live.finish();
      return true;
    }
    live.controller.abort();
    // The driver stops between kernel calls (about chunkMs apart); don't hold the request long.
    await Promise.race([live.done, new Promise((r) => setTimeout(r, waitMs))]);
    return true;
  }

  /** Deletes a run and its log, stopping it first if needed. */
  async remove(id: string): Promise<boolean> {
    const e = this.#runs.get(id);
    if (!e) return false;
    e.removed = true;
    const live = e.live;
    if (live) {
      const queuedAt = this.#queue.indexOf(id);
      if (queuedAt >= 0) this.#queue.splice(queuedAt, 1);
      live.controller.abort();
      live.log.close();
      if (queuedAt >= 0) {
        e.live = undefined;
        live.finish();
      }
    }
    this.#runs.delete(id);
    this.#logCache.delete(id);
    try {
      await Deno.remove(e.path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    await removeCheckpoint(checkpointPathFor(e.path));
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
    const interrupt = (live: LiveRun) => {
      live.recorder.setStatus(
        "interrupted",
        "the server was shut down while this run was in flight",
      );
      live.log.close();
    };
    for (const e of this.#runs.values()) {
      const live = e.live;
      if (!live) continue;
      if (this.#queue.includes(e.id)) {
        interrupt(live);
        e.live = undefined;
        live.finish();
      } else {
        live.controller.abort(SHUTDOWN);
        waits.push(live.done);
      }
    }
    this.#queue = [];
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 5000))]);
    for (const e of this.#runs.values()) if (e.live) interrupt(e.live);
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
  return {
    id: e.id,
    experiment: e.header.spec.experiment,
    status: e.status,
    step: e.step,
    steps,
    progress: steps > 0 ? Math.min(1, e.step / steps) : 1,
    backend: e.header.backend,
    adapter: e.header.adapter,
    created: e.header.created,
    ...(e.started ? { started: new Date(e.started).toISOString() } : {}),
    ...(e.ended ? { ended: new Date(e.ended).toISOString() } : {}),
    spec: e.header.spec,
    last_seq: e.lastSeq,
    ...(e.error ? { error: e.error } : {}),
    ...e.labels,
    ...(e.header.sweep ? { sweep: e.header.sweep } : {}),
  };
}
