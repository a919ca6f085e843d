/**
 * A lab worker in the multi-box mode (`deno task worker`, docs/protocol.md "Records on NATS
 * subjects"): pulls jobs from the work-queue stream up to its capacity, computes each in a
 * kernel Worker through the same driver as `lab run` and the server, publishes the records on
 * the run's subject, checkpoints into the object store, and finishes each job exactly once
 * (an outcome created in lab_jobs). A job whose worker dies is redelivered after the ack
 * wait and continues from its checkpoint elsewhere, with the same seqs; a graceful stop
 * checkpoints and hands its jobs back at once.
 */
import type { JsMsg } from "@nats-io/jetstream";
import type {
  AdvanceOptions,
  BackendChoice,
  BackendName,
  KernelSession,
  RunSpec,
  SessionState,
} from "../experiments/types.ts";
import { BackendUnavailableError, probeBackend, resolveBackend } from "../engine/open.ts";
import { openWorkerSession } from "../engine/worker_session.ts";
import { openThreadedSession } from "../engine/threaded_session.ts";
import { type DriveResult, driveRun, SHUTDOWN } from "../runs/driver.ts";
import type { DriverCheckpoint } from "../runs/driver.ts";
import {
  decodeCheckpoint,
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  encodeCheckpoint,
  type RunCheckpoint,
} from "../runs/checkpoints.ts";
import { resumedEvent } from "../runs/resume.ts";
import { newRunHeader } from "../runs/header.ts";
import { type BodyRecord, decodeRecord, expandSnapshots } from "../runs/records.ts";
import { defaultConcurrency } from "../runs/manager.ts";
import { redactPaths } from "../redact_paths.ts";
import { codeVersion } from "../version.ts";
import {
  connectLab,
  DEFAULT_JOB_ACK_WAIT_MS,
  JOBS_CONSUMER,
  JOBS_STREAM,
  type LabNats,
  NatsError,
  type NatsSettings,
  RECORDS_STREAM,
  recordsSubject,
} from "./nats.ts";
import { jobKey, type JobMessage, parseJob, validateJobSpec } from "./job_message.ts";
import { HEADER_SHARD, RecordPublisher } from "./record_publisher.ts";
import { JobRecorder } from "./job_recorder.ts";

export interface WorkerOptions {
  nats: NatsSettings;
  /** Backend for jobs whose spec says `auto` (a spec naming a backend is honoured). */
  backend: BackendChoice;
  /**
   * Jobs computed at once (default: the server's default concurrency for the backend, divided
   * by `threads`).
   */
  capacity?: number;
  /**
   * Workers per job: a job's replicas split across them as `serve --threads` splits a run's
   * (server/engine/threaded_session.ts; the same numbers, bit for bit). Default 1.
   */
  threads?: number;
  /** Compute time between a job's checkpoints; overrides the job's own setting. */
  checkpointIntervalMs?: number;
  /** Sets the jobs consumer's ack wait; absent, the one set before stays (30 s when new). */
  jobAckWaitMs?: number;
  /** One-line messages for the operator (default: stderr). */
  log?: (line: string) => void;
}

/** What a worker says about itself in lab_workers (every ANNOUNCE_MS). */
export interface WorkerAnnouncement {
  id: string;
  box: string;
  backend: BackendName;
  adapter: string;
  capacity: number;
  /** Job keys `<run>.<shard>` being computed. */
  running: string[];
  started: string;
  /** Epoch milliseconds of this announcement. */
  heartbeat: number;
  version: string;
}

/** What a finished job's outcome in lab_jobs says (written once, by create). */
export interface JobOutcome {
  worker: string;
  status: "finished" | "failed" | "stopped";
  /** Seq of the job's last record. */
  seq: number;
  step: number;
  /** Epoch milliseconds. */
  time: number;
  error?: string;
}

export const ANNOUNCE_MS = 2000;
/** Where a coordinator says a run is cancelled (`lab.runs.<run>.cancel`, core NATS). */
export const CANCEL_SUBJECTS = "lab.runs.*.cancel";
const CONNECT_RETRY_MS = 2000;
/**
 * How long a pull waits for a job before asking again; also how long a graceful stop may wait
 * for its idle pulls to end (see stop()).
 */
const PULL_EXPIRES_MS = 3000;
/** Records waiting for NATS beyond which the computation pauses (memory stays bounded). */
const PUBLISH_HIGH_WATER = 20_000;
/** Deliveries of a job that this worker cannot open (its backend is missing) before it fails. */
const LOCAL_FAILURE_TRIES = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The backend this worker computes on for `choice`, or why it cannot (one line). */
export async function workerBackend(
  choice: BackendChoice,
): Promise<{ name: BackendName; adapter: string }> {
  if (choice === "auto") {
    const gpu = await probeBackend("webgpu");
    if (gpu.available && !gpu.fallback) return { name: "webgpu", adapter: gpu.adapter };
    const wasm = await probeBackend("wasm");
    if (wasm.available) return { name: "wasm", adapter: wasm.adapter };
    return { name: "reference", adapter: (await probeBackend("reference")).adapter };
  }
  const probe = await probeBackend(choice);
  if (!probe.available) {
    throw new BackendUnavailableError(
      `backend ${choice} is not available here: ${redactPaths(probe.reason ?? "unknown reason")}`,
    );
  }
  return { name: choice, adapter: probe.adapter };
}

/** A new worker id: `<hostname>-<pid>-<random>`. */
export function newWorkerId(): string {
  const rand = crypto.getRandomValues(new Uint8Array(3));
  return `${Deno.hostname()}-${Deno.pid}-${
    [...rand].map((b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}

/** A job's end on this worker: `interrupted` hands it back (after `retryMs`, else at once). */
type JobResult = DriveResult & { seq: number; retryMs?: number };

interface RunningJob {
  run: string;
  /** The latest delivery of the job (heartbeats and the final ack go there). */
  msg: JsMsg;
  controller: AbortController;
  done: Promise<void>;
}

export class LabWorker {
  readonly id = newWorkerId();
  readonly box = Deno.hostname();
  readonly started = new Date().toISOString();
  readonly capacity: number;
  #lab?: LabNats;
  #running = new Map<string, RunningJob>();
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #announcer?: ReturnType<typeof setInterval>;
  #heartbeatMs = 10_000;
  #log: (line: string) => void;
  #slots: Promise<void>[] = [];

  private constructor(
    readonly opts: WorkerOptions,
    readonly backend: { name: BackendName; adapter: string },
  ) {
    this.capacity = opts.capacity ??
      Math.max(1, Math.floor(defaultConcurrency()[backend.name] / (opts.threads ?? 1)));
    this.#log = opts.log ?? ((line) => console.error(`lab worker: ${line}`));
  }

  /** Probes the backend (throws BackendUnavailableError); begin() then connects and pulls. */
  static async open(opts: WorkerOptions): Promise<LabWorker> {
    return new LabWorker(opts, await workerBackend(opts.backend));
  }

  /** Job keys being computed. */
  get running(): string[] {
    return [...this.#running.keys()];
  }

  /**
   * Connects (retrying while NATS is unreachable, said once) and starts pulling jobs; rejects
   * only on what retrying cannot mend (credentials refused).
   */
  async begin(): Promise<void> {
    const lab = await this.#connect();
    if (!lab) return; // stopped before NATS was reachable
    this.#lab = lab;
    this.#watchConnection(lab);
    await this.#readAckWait(lab);
    await this.#announce();
    this.#announcer = setInterval(() => this.#announce(), ANNOUNCE_MS);
    this.#log(
      `${this.id} on ${this.backend.name} (${this.backend.adapter}), capacity ${this.capacity}` +
        `${(this.opts.threads ?? 1) > 1 ? `, ${this.opts.threads} threads per job` : ""}: ` +
        `pulling jobs from ${this.opts.nats.url}`,
    );
    // A coordinator cancels a run (stopped or deleted, or another shard failed) with a core
    // message; it has already written the outcome of every shard.
    lab.nc.subscribe(CANCEL_SUBJECTS, {
      callback: (_err, m) => {
        const run = m.subject.split(".")[2];
        for (const job of this.#running.values()) if (job.run === run) job.controller.abort();
      },
    });
    const consumer = await lab.js.consumers.get(JOBS_STREAM, JOBS_CONSUMER);
    for (let i = 0; i < this.capacity; i++) {
      this.#slots.push((async () => {
        while (!this.#stopping) {
          let msg: JsMsg | null;
          try {
            msg = await consumer.next({ expires: PULL_EXPIRES_MS });
          } catch {
            // NATS is away (reported once by #watchConnection) or the pull failed: ask again.
            await sleep(1000);
            continue;
          }
          if (!msg) continue;
          if (this.#stopping) {
            msg.nak();
            break;
          }
          await this.#handle(lab, msg);
        }
      })());
    }
  }

  /** Connects, retrying while NATS is unreachable (said once); null if stopped meanwhile. */
  async #connect(): Promise<LabNats | null> {
    let said = false;
    while (!this.#stopping) {
      try {
        const lab = await connectLab(
          { ...this.opts.nats, persistent: true, name: `lab-worker ${this.id}` },
          { jobAckWaitMs: this.opts.jobAckWaitMs },
        );
        if (said) this.#log(`connected to NATS at ${this.opts.nats.url}`);
        return lab;
      } catch (e) {
        const line = e instanceof NatsError ? e.message : String(e);
        // Unreadable or refused credentials do not mend by waiting.
        if (/credentials/.test(line)) throw new NatsError(line);
        if (!said) this.#log(`${line}; retrying every ${CONNECT_RETRY_MS / 1000} s`);
        said = true;
        await sleep(CONNECT_RETRY_MS);
      }
    }
    return null;
  }

  /** One line when the connection drops and one when it is back. */
  #watchConnection(lab: LabNats): void {
    (async () => {
      let down = false;
      for await (const s of lab.nc.status()) {
        if (s.type === "disconnect" && !down && !this.#stopping) {
          down = true;
          this.#log(
            `lost NATS at ${this.opts.nats.url}; reconnecting ` +
              "(jobs in flight go on until their next checkpoint)",
          );
        } else if (s.type === "reconnect" && down) {
          down = false;
          this.#log(`reconnected to NATS at ${this.opts.nats.url}`);
        }
      }
    })().catch(() => {});
  }

  /**
   * Heartbeats every third of the consumer's ack wait. Any process that connects may change
   * it (ensureLabStreams), so it is read again with every announcement.
   */
  async #readAckWait(lab: LabNats): Promise<void> {
    try {
      const info = await lab.jsm.consumers.info(JOBS_STREAM, JOBS_CONSUMER);
      const ackWaitMs = (info.config.ack_wait ?? DEFAULT_JOB_ACK_WAIT_MS * 1e6) / 1e6;
      this.#heartbeatMs = Math.max(100, Math.floor(ackWaitMs / 3));
    } catch { /* NATS away: keep the last value */ }
  }

  async #announce(): Promise<void> {
    const lab = this.#lab;
    if (!lab || this.#stopping) return;
    await this.#readAckWait(lab);
    const a: WorkerAnnouncement = {
      id: this.id,
      box: this.box,
      backend: this.backend.name,
      adapter: this.backend.adapter,
      capacity: this.capacity,
      running: this.running,
      started: this.started,
      heartbeat: Date.now(),
      version: codeVersion(),
    };
    try {
      await lab.workers.put(this.id, JSON.stringify(a));
    } catch { /* NATS away: the next heartbeat tries again */ }
  }

  /** Runs one pulled job to its end, or hands it back at a graceful stop. */
  async #handle(lab: LabNats, msg: JsMsg): Promise<void> {
    const parsed = parseJob(msg.data);
    if ("error" in parsed) {
      // Without a run id no record can say which run failed: the message is dropped for good.
      this.#log(`dropping job message ${msg.seq}: ${parsed.error}`);
      msg.term();
      return;
    }
    const job = parsed.job;
    const key = jobKey(job.run, job.shard);
    const already = this.#running.get(key);
    if (already) {
      // Redelivered to the worker still computing it (a heartbeat came too late): the job goes
      // on, reporting and acking through the latest delivery.
      already.msg = msg;
      msg.working();
      return;
    }
    // Registered before the outcome is looked at, so that a cancel arriving meanwhile stops it.
    const controller = new AbortController();
    let finish!: () => void;
    const done = new Promise<void>((r) => finish = r);
    const entry: RunningJob = { run: job.run, msg, controller, done };
    this.#running.set(key, entry);
    // A chain of timeouts, not an interval: each takes the current heartbeat period.
    let beat: ReturnType<typeof setTimeout>;
    const heartbeat = () => {
      try {
        entry.msg.working();
      } catch { /* NATS away: the next one tries again */ }
      beat = setTimeout(heartbeat, this.#heartbeatMs);
    };
    beat = setTimeout(heartbeat, this.#heartbeatMs);
    const publisher = new RecordPublisher(lab.js, job, this.id, this.#log);
    try {
      if (await this.#outcomeExists(lab, key)) {
        entry.msg.ack(); // finished (or cancelled) already
        return;
      }
      this.#log(`job ${key} (delivery ${msg.info.deliveryCount}) started`);
      const result = await this.#compute(lab, job, msg, publisher, controller.signal);
      await publisher.flush();
      if (result.status === "interrupted") {
        // At a stop: redelivered at once, to continue from the checkpoint just written.
        entry.msg.nak(result.retryMs);
        this.#log(
          result.retryMs
            ? `job ${key} handed back for another worker: ${result.error}`
            : `job ${key} handed back at step ${result.step}`,
        );
        return;
      }
      const outcome: JobOutcome = {
        worker: this.id,
        status: result.status,
        seq: result.seq,
        step: result.step,
        time: Date.now(),
        ...(result.error ? { error: result.error } : {}),
      };
      const first = await this.#writeOutcome(lab, key, outcome);
      entry.msg.ack();
      await lab.checkpoints.delete(key).catch(() => {});
      this.#log(
        first
          ? `job ${key} ${result.status} at step ${result.step}${
            result.error ? `: ${result.error}` : ""
          }`
          : result.status === "stopped"
          ? `job ${key} cancelled at step ${result.step}`
          : `job ${key} was finished by another worker first; dropped this result`,
      );
    } catch (e) {
      // Only NATS failures land here (compute errors end the job `failed`): hand it back.
      this.#log(`job ${key} handed back: ${e instanceof Error ? e.message : e}`);
      try {
        entry.msg.nak(5000);
      } catch { /* redelivered after the ack wait */ }
    } finally {
      clearTimeout(beat);
      this.#running.delete(key);
      finish();
    }
  }

  async #compute(
    lab: LabNats,
    job: JobMessage,
    msg: JsMsg,
    publisher: RecordPublisher,
    signal: AbortSignal,
  ): Promise<JobResult> {
    const key = jobKey(job.run, job.shard);
    /** Ends the job `failed` before it computed anything (its sequence ends with this status). */
    const failEarly = (error: string, seq = 1): JobResult => {
      const failed: BodyRecord = {
        type: "status",
        seq,
        time: Date.now(),
        status: "failed",
        step: 0,
        error: redactPaths(error),
      };
      publisher.push([failed]);
      return { status: "failed", step: 0, error: failed.error, stepsPerSecond: 0, seq };
    };
    /**
     * What this worker lacks (the backend, or a session of it) another may have: the job goes
     * back for a while; after LOCAL_FAILURE_TRIES deliveries it fails. Its failed status then
     * follows whatever earlier attempts published, so the de-duplication by msgID keeps it.
     */
    const failHere = async (e: unknown): Promise<JobResult> => {
      const error = `on worker ${this.id}: ${e instanceof Error ? e.message : e}`;
      if (msg.info.deliveryCount < LOCAL_FAILURE_TRIES) {
        return { status: "interrupted", step: 0, stepsPerSecond: 0, seq: 0, error, retryMs: 2000 };
      }
      const last = msg.info.deliveryCount > 1 ? await this.#lastPublishedSeq(lab, job) : 0;
      return failEarly(error, last + 1);
    };
    let spec: RunSpec;
    try {
      spec = validateJobSpec(job);
    } catch (e) {
      // The same on every worker: every attempt fails at seq 1.
      return failEarly(`invalid job spec: ${e instanceof Error ? e.message : e}`);
    }
    let backend: BackendName;
    try {
      const choice = spec.backend === "auto" ? this.opts.backend : spec.backend;
      backend = (await resolveBackend(choice, spec.experiment)).name;
    } catch (e) {
      return await failHere(e);
    }
    let ckpt = await this.#loadCheckpoint(lab, key);
    let session: KernelSession;
    try {
      session = await this.#openSession({ ...spec, backend }, ckpt?.state);
    } catch (e) {
      if (!ckpt) return await failHere(e);
      // A checkpoint this job cannot continue from: recompute from step 0, which re-emits the
      // same records with the same seqs.
      this.#log(`job ${key}: ignoring its checkpoint (${(e as Error).message}); from step 0`);
      ckpt = null;
      try {
        session = await this.#openSession({ ...spec, backend });
      } catch (e) {
        return await failHere(e);
      }
    }
    const header = newRunHeader(job.run, spec, session.backend, session.adapter);
    const recorder = new JobRecorder(header, ckpt ?? undefined);
    if (msg.info.deliveryCount > 1 || ckpt) {
      const marker = { ...resumedEvent(ckpt, `redelivered to worker ${this.id}`), seq: 0 };
      publisher.pushMarker(marker as BodyRecord, "resumed", msg.info.deliveryCount);
    }
    // Snapshots go out one per message, as the coordinator merges shards snapshot by snapshot.
    recorder.listen((records) => publisher.push(expandSnapshots(records)));
    const interval = this.opts.checkpointIntervalMs ?? job.checkpointIntervalMs ??
      DEFAULT_CHECKPOINT_INTERVAL_MS;
    try {
      const result = await driveRun(backpressured(session, publisher), spec, recorder, {
        signal,
        // Interval 0: no periodic checkpoints, but still one when the job is handed back.
        checkpoint: {
          intervalMs: interval > 0 ? interval : Infinity,
          save: async (c) => {
            // A checkpoint covers the records before it: they must be stored first, or a
            // worker continuing from it would never publish them.
            await publisher.flush();
            try {
              await this.#saveCheckpoint(lab, key, c);
            } catch (e) {
              // The previous checkpoint stays: a continuation recomputes a little more.
              this.#log(
                `job ${key}: checkpoint at step ${c.step} not written (${
                  e instanceof Error ? e.message : e
                })`,
              );
            }
          },
        },
        resume: ckpt ? { diverged: ckpt.diverged } : undefined,
        shard: job.shards > 1,
      });
      return { ...result, seq: recorder.lastSeq };
    } finally {
      await session.dispose();
    }
  }

  /** The highest seq the records stream holds for the job's shard (0: none). */
  async #lastPublishedSeq(lab: LabNats, job: JobMessage): Promise<number> {
    const consumer = await lab.js.consumers.get(RECORDS_STREAM, {
      filter_subjects: recordsSubject(job.run),
    });
    let last = 0;
    for (;;) {
      let n = 0;
      let pending = 1;
      for await (const m of await consumer.fetch({ max_messages: 1024, expires: 1000 })) {
        n++;
        pending = m.info.pending;
        if (m.headers?.get(HEADER_SHARD) === String(job.shard)) {
          last = Math.max(last, decodeRecord<BodyRecord>(m.data).seq);
        }
      }
      if (n === 0 || pending === 0) return last;
    }
  }

  /** A job's session: split across `threads` workers where the run allows it, else one. */
  #openSession(spec: RunSpec, state?: SessionState): Promise<KernelSession> {
    const threads = this.opts.threads ?? 1;
    return threads > 1
      ? openThreadedSession(spec, state, { threads })
      : openWorkerSession(spec, state);
  }

  async #loadCheckpoint(lab: LabNats, key: string): Promise<RunCheckpoint | null> {
    let bytes: Uint8Array | null;
    try {
      bytes = await lab.checkpoints.getBlob(key);
    } catch (e) {
      this.#log(`job ${key}: cannot read its checkpoint (${(e as Error).message}); from step 0`);
      return null;
    }
    if (!bytes) return null;
    const decoded = await decodeCheckpoint(bytes);
    if ("error" in decoded) {
      this.#log(`job ${key}: ignoring its checkpoint (${decoded.error}); from step 0`);
      return null;
    }
    if (decoded.checkpoint.run !== key) {
      this.#log(`job ${key}: ignoring a checkpoint of ${decoded.checkpoint.run}; from step 0`);
      return null;
    }
    return decoded.checkpoint;
  }

  async #saveCheckpoint(lab: LabNats, key: string, c: DriverCheckpoint): Promise<void> {
    const bytes = await encodeCheckpoint({
      format: "lab-checkpoint",
      version: 1,
      run: key,
      seq: c.seq,
      step: c.step,
      diverged: c.diverged,
      written: new Date().toISOString(),
      state: c.state,
    });
    // One object per job, replaced whole: a reader sees the previous checkpoint or this one.
    await lab.checkpoints.putBlob({ name: key }, bytes);
  }

  async #outcomeExists(lab: LabNats, key: string): Promise<boolean> {
    for (;;) {
      try {
        return (await lab.outcomes.get(key)) !== null;
      } catch {
        await sleep(1000); // NATS away
      }
    }
  }

  /** Creates the job's outcome; false when another worker's outcome was there first. */
  async #writeOutcome(lab: LabNats, key: string, outcome: JobOutcome): Promise<boolean> {
    for (;;) {
      try {
        await lab.outcomes.create(key, JSON.stringify(outcome));
        return true;
      } catch (e) {
        if (/wrong last sequence|key exists/i.test((e as Error).message)) return false;
        await sleep(1000); // NATS away: the job is not finished until this is written
      }
    }
  }

  /**
   * Graceful stop: no more pulls; running jobs checkpoint and go back to the queue at once;
   * the announcement is deleted.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      clearInterval(this.#announcer);
      for (const job of this.#running.values()) job.controller.abort(SHUTDOWN);
      await Promise.all([...this.#running.values()].map((j) => j.done));
      // The connection stays open until every pull has ended: a job handed back may be
      // delivered at once to one of this worker's own idle pulls, which must nak it too rather
      // than lose it in a closing connection (it would wait for the ack wait).
      await Promise.all(this.#slots);
      const lab = this.#lab;
      if (lab) {
        await lab.workers.delete(this.id).catch(() => {});
        // The naks must reach the server before the connection goes.
        await lab.nc.flush().catch(() => {});
        await lab.nc.close().catch(() => {});
      }
    })();
    return this.#stopped;
  }
}

/** The session, pausing before each call while too many records wait for NATS. */
function backpressured(session: KernelSession, publisher: RecordPublisher): KernelSession {
  return {
    get backend() {
      return session.backend;
    },
    get adapter() {
      return session.adapter;
    },
    get step() {
      return session.step;
    },
    async advance(target: number, options?: AdvanceOptions) {
      if (publisher.pending > PUBLISH_HIGH_WATER) await publisher.flush();
      return session.advance(target, options);
    },
    exportState: session.exportState ? () => session.exportState!() : undefined,
    dispose: () => session.dispose(),
  };
}
