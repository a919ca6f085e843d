/**
 * The coordinator of the multi-box mode (`deno task serve --nats=URL`; docs/protocol.md,
 * "Several boxes"): the lab's API, store, stream and dashboard as always, but each run is
 * computed as jobs on the LAB_JOBS work queue, one per shard of its replicas, and the shards'
 * records come back on `lab.runs.<run>.records`, merged (merge.ts) into the run's recorder.
 * It is the RunManager's executor (server/runs/executor.ts): one store, one reader path.
 *
 * Exactness across a coordinator crash. The run's log is the only persistent merge state:
 *  - the merge is a pure function of the shards' sequences (merge.ts), and every record of a
 *    shard carries its own deterministic seq, so a merge fed the shards' records again from
 *    seq 1 produces the same merged sequence;
 *  - at start-up a run in flight is reattached (RunManager.#reattach): its recorder continues
 *    after the log's last record and drops the merged snapshots, events and frames the log
 *    already holds; its durable consumer is recreated to deliver the run's subject from the
 *    start, so the merge is rebuilt up to where the log ends and goes on from there;
 *  - a message is acknowledged only once the merged records containing it are in the log
 *    (acks are flow control here: correctness never depends on them);
 *  - markers that are not part of the deterministic sequence (a shard resumed on another
 *    worker; the run's `running` status) are written once: on reattach the log says which
 *    were written.
 * So a SIGKILL at any point loses nothing and stores nothing twice, as long as the records
 * stream still holds the run's records (its limits: docs/protocol.md).
 */
import type { RunSpec } from "../experiments/types.ts";
import { MERGEABLE_EXPERIMENTS, planShards, shardSpec } from "../experiments/shard.ts";
import type { BodyRecord } from "../runs/records.ts";
import { decodeRecord } from "../runs/records.ts";
import { RunLogWriteError } from "../runs/runlog.ts";
import type { Unsequenced } from "../runs/recorder.ts";
import { SHUTDOWN } from "../runs/driver.ts";
import {
  type Admission,
  ComputeUnavailableError,
  type ExecutedRun,
  type RunExecutor,
} from "../runs/executor.ts";
import { DEFAULT_CHECKPOINT_INTERVAL_MS } from "../runs/checkpoints.ts";
import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import {
  connectLab,
  DEFAULT_WORKER_TTL_MS,
  JOBS_SUBJECT,
  type LabNats,
  type NatsSettings,
  RECORDS_STREAM,
  recordsSubject,
} from "./nats.ts";
import { type MergedRecord, replicasText, ShardMerger, type ShardRange } from "./merge.ts";

/** Subject a run's cancel is published on (core NATS): workers running its jobs stop them. */
export function cancelSubject(run: string): string {
  return `lab.runs.${run}.cancel`;
}

/** The durable consumer through which the coordinator reads one run's records. */
export function recordsConsumer(run: string): string {
  return `lab-coord-${run}`;
}

export interface CoordinatorOptions {
  nats: NatsSettings;
  /** Replicas per shard; absent: split by the live workers' total capacity (planFor). */
  shardReplicas?: number;
  jobAckWaitMs?: number;
  /** Compute time between a job's checkpoints (the job message carries it). */
  checkpointIntervalMs?: number;
  /** Pause between connection attempts while NATS is unreachable. */
  retryMs?: number;
  /** Where the coordinator's one-line notices go (stderr by default). */
  log?: (line: string) => void;
}

/** A worker's announcement (lab_workers), as GET /api/workers lists it. */
export interface WorkerInfo {
  id: string;
  box: string;
  backend: string;
  adapter: string;
  capacity: number;
  running: string[];
  started?: number | string;
  heartbeat: number;
  version?: string;
}

export interface NatsHealth {
  url: string;
  connected: boolean;
  error?: string;
}

const NS = 1_000_000;
/** Records held for a merge are redelivered after this (and dropped as repeats). */
const RECORDS_ACK_WAIT_MS = 5 * 60_000;
const FETCH_MAX = 512;
const FETCH_EXPIRES_MS = 1000;

/**
 * Shards of a run of `replicas` replicas: blocks of `shardReplicas` when given; else one
 * block per unit of the live workers' total capacity (each gets ⌈R / capacity⌉ replicas,
 * so every worker slot has work and none gets more than one block too many); one block when
 * no worker is live (the run waits for the first).
 */
export function planFor(
  replicas: number,
  shardReplicas: number | undefined,
  capacity: number,
): ShardRange[] {
  const size = shardReplicas ?? Math.ceil(replicas / Math.max(1, capacity));
  return planShards(replicas, Math.max(1, size));
}

/** The URL without user:password@ or token@ (health is readable without the lab's token). */
function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/g, "//");
}

export class Coordinator implements RunExecutor {
  #opts: CoordinatorOptions;
  #lab?: LabNats;
  #connected = false;
  #error?: string;
  #closed = false;
  #waiters = new Set<() => void>();
  #log: (line: string) => void;
  /** Runs stopped while NATS was down: their cancel goes out when it is back. */
  #pendingCancels = new Map<string, ShardRange[]>();

  constructor(opts: CoordinatorOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? ((l) => console.error(l));
  }

  /** Starts connecting (in the background, retrying until NATS answers). */
  start(): this {
    this.#connectLoop();
    return this;
  }

  /** The NATS settings (a worker in the same process, --local-compute, uses them too). */
  get settings(): NatsSettings {
    return this.#opts.nats;
  }

  get jobAckWaitMs(): number | undefined {
    return this.#opts.jobAckWaitMs;
  }

  get connected(): boolean {
    return this.#connected;
  }

  health(): NatsHealth {
    return {
      url: redactUrl(this.#opts.nats.url),
      connected: this.#connected,
      ...(this.#connected || !this.#error ? {} : { error: this.#error }),
    };
  }

  async #connectLoop(): Promise<void> {
    let reported = false;
    while (!this.#closed) {
      try {
        this.#lab = await connectLab(
          { ...this.#opts.nats, persistent: true, name: this.#opts.nats.name ?? "lab-coordinator" },
          { jobAckWaitMs: this.#opts.jobAckWaitMs },
        );
        break;
      } catch (e) {
        this.#error = e instanceof Error ? e.message : String(e);
        if (!reported) {
          this.#log(`${this.#error}; serving stored runs, retrying until it answers`);
          reported = true;
        }
        await new Promise((r) => setTimeout(r, this.#opts.retryMs ?? 2000));
      }
    }
    const lab = this.#lab;
    if (!lab || this.#closed) {
      await lab?.close();
      return;
    }
    this.#setConnected(true);
    this.#log(`NATS connected at ${redactUrl(this.#opts.nats.url)}: runs are computed by workers`);
    (async () => {
      for await (const s of lab.nc.status()) {
        if (s.type === "disconnect") {
          this.#error = `NATS at ${redactUrl(this.#opts.nats.url)} is down`;
          if (this.#connected) this.#log(`${this.#error}: serving stored runs, reconnecting`);
          this.#setConnected(false);
        } else if (s.type === "reconnect") {
          this.#log("NATS is back: runs go on");
          this.#setConnected(true);
        }
      }
    })().catch(() => {});
    lab.nc.closed().then(() => this.#setConnected(false));
  }

  #setConnected(up: boolean): void {
    this.#connected = up;
    if (!up) return;
    this.#error = undefined;
    for (const w of this.#waiters) w();
    this.#waiters.clear();
    this.#flushCancels();
  }

  /** The connection, once NATS answers (undefined if `signal` aborts first). */
  async #ready(signal?: AbortSignal): Promise<LabNats | undefined> {
    while (!this.#connected || !this.#lab) {
      if (signal?.aborted || this.#closed) return undefined;
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#waiters.add(resolve);
      const onAbort = () => resolve();
      signal?.addEventListener("abort", onAbort, { once: true });
      const timer = setTimeout(resolve, 1000);
      await promise;
      clearTimeout(timer);
      this.#waiters.delete(resolve);
      signal?.removeEventListener("abort", onAbort);
    }
    return this.#lab;
  }

  #unavailable(): ComputeUnavailableError {
    return new ComputeUnavailableError(
      `${
        this.#error ?? `NATS at ${redactUrl(this.#opts.nats.url)} is not connected`
      }: no run can be started until it is back (stored runs are still served)`,
    );
  }

  /** The live workers' announcements, newest heartbeat first. */
  async workers(): Promise<WorkerInfo[]> {
    const lab = this.#lab;
    if (!lab || !this.#connected) throw this.#unavailable();
    const out: WorkerInfo[] = [];
    const now = Date.now();
    for await (const key of await lab.workers.keys()) {
      const entry = await lab.workers.get(key).catch(() => null);
      if (!entry || entry.operation !== "PUT") continue;
      try {
        const w = entry.json<WorkerInfo>();
        if (now - (w.heartbeat ?? 0) > DEFAULT_WORKER_TTL_MS) continue;
        out.push({
          id: w.id ?? key,
          box: w.box ?? "?",
          backend: w.backend ?? "?",
          adapter: w.adapter ?? "?",
          capacity: w.capacity ?? 1,
          running: Array.isArray(w.running) ? w.running : [],
          ...(w.started ? { started: w.started } : {}),
          heartbeat: w.heartbeat,
          ...(w.version ? { version: w.version } : {}),
        });
      } catch { /* not a worker's announcement */ }
    }
    return out.sort((a, b) => b.heartbeat - a.heartbeat);
  }

  async admit(spec: RunSpec): Promise<Admission> {
    if (!this.#connected) throw this.#unavailable();
    let capacity = 0;
    if (this.#opts.shardReplicas === undefined) {
      for (const w of await this.workers()) capacity += Math.max(1, w.capacity);
    }
    let shards = planFor(spec.replicas, this.#opts.shardReplicas, capacity);
    try {
      // Shards of the other experiments would not merge into the one-box run's records.
      if (!MERGEABLE_EXPERIMENTS.has(spec.experiment)) throw new Error("not mergeable");
      for (const s of shards) shardSpec(spec, s.first, s.count);
    } catch {
      // Run as one job: large-lr, label-noise-anneal (MERGEABLE_EXPERIMENTS), noise pairs.
      shards = [{ first: 0, count: spec.replicas }];
    }
    return {
      backend: spec.backend,
      adapter: `NATS workers (${shards.length} shard${shards.length === 1 ? "" : "s"})`,
      shards,
    };
  }

  async #publishJobs(lab: LabNats, run: ExecutedRun, shards: ShardRange[]): Promise<void> {
    const full: RunSpec = {
      ...run.header.spec,
      ...(run.header.sweep ? { sweep: run.header.sweep } : {}),
    };
    const enc = new TextEncoder();
    for (let i = 0; i < shards.length; i++) {
      // A reattached run: shards that have an outcome are done; the others are published
      // again (the stream drops a repeat inside its duplicate window; a worker skips a job
      // whose outcome exists, so a job is finished once even if it runs twice).
      if (run.reattached && await lab.outcomes.get(`${run.id}.${i}`).catch(() => null)) continue;
      const { first, count } = shards[i];
      const job = {
        v: 1,
        run: run.id,
        shard: i,
        shards: shards.length,
        first,
        count,
        spec: shardSpec(full, first, count),
        checkpointIntervalMs: this.#opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS,
      };
      await lab.js.publish(JOBS_SUBJECT, enc.encode(JSON.stringify(job)), {
        msgID: `job.${run.id}.${i}`,
      });
    }
  }

  async #cancel(run: string, shards: ShardRange[]): Promise<void> {
    const lab = this.#lab;
    if (!lab || !this.#connected) {
      this.#pendingCancels.set(run, shards);
      return;
    }
    try {
      const body = JSON.stringify({ worker: "coordinator", status: "stopped", time: Date.now() });
      for (let i = 0; i < shards.length; i++) {
        // Queued jobs of the run are then skipped by whichever worker pulls them.
        await lab.outcomes.create(`${run}.${i}`, new TextEncoder().encode(body)).catch(() => {});
      }
      lab.nc.publish(cancelSubject(run), JSON.stringify({ run, time: Date.now() }));
      await lab.jsm.consumers.delete(RECORDS_STREAM, recordsConsumer(run)).catch(() => {});
      this.#pendingCancels.delete(run);
    } catch {
      this.#pendingCancels.set(run, shards);
    }
  }

  #flushCancels(): void {
    for (const [run, shards] of this.#pendingCancels) this.#cancel(run, shards).catch(() => {});
  }

  async execute(run: ExecutedRun): Promise<void> {
    const shards = run.header.cluster?.shards ??
      [{ first: 0, count: run.header.spec.replicas }];
    const { recorder, signal } = run;
    const merger = new ShardMerger(shards);
    const resumedWritten = new Set<string>();
    if (run.reattached) {
      for await (const r of run.records()) {
        if (r.type === "event" && r.event.type === "resumed" && r.event.detail) {
          resumedWritten.add(r.event.detail);
        }
      }
    }
    const consumer = recordsConsumer(run.id);
    let published = false;
    let consumerReady = false;
    // Held until the merged records containing them are in the log.
    const unacked: { m: JsMsg; seq: number }[][] = shards.map(() => []);

    const emit = (records: MergedRecord[]): boolean => {
      if (records.length === 0) return true;
      try {
        recorder.emit(records);
        return true;
      } catch (e) {
        if (e instanceof RunLogWriteError) return false; // the recorder has ended the run
        throw e;
      }
    };

    while (!merger.outcome) {
      if (signal.aborted) break;
      const lab = await this.#ready(signal);
      if (!lab) break;
      try {
        if (!published) {
          await this.#publishJobs(lab, run, shards);
          published = true;
        }
        if (!consumerReady) {
          // Recreated on every attach: it delivers the run's subject from its start, which
          // rebuilds the merge (see the top of this file).
          await lab.jsm.consumers.delete(RECORDS_STREAM, consumer).catch(() => {});
          await lab.jsm.consumers.add(RECORDS_STREAM, {
            durable_name: consumer,
            filter_subject: recordsSubject(run.id),
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            ack_wait: RECORDS_ACK_WAIT_MS * NS,
            max_ack_pending: -1,
          });
          consumerReady = true;
        }
        const c = await lab.js.consumers.get(RECORDS_STREAM, consumer);
        const batch = await c.fetch({ max_messages: FETCH_MAX, expires: FETCH_EXPIRES_MS });
        const out: MergedRecord[] = [];
        for await (const m of batch) {
          const shard = Number(m.headers?.get("Lab-Shard") ?? "0");
          if (!Number.isInteger(shard) || shard < 0 || shard >= shards.length) {
            m.ack();
            continue;
          }
          let record: BodyRecord;
          try {
            record = decodeRecord<BodyRecord>(m.data);
          } catch {
            m.ack(); // not a record: nothing to merge
            continue;
          }
          if (m.headers?.get("Lab-Marker") === "resumed" || record.seq === 0) {
            const marker = resumedMarker(m, shard, shards[shard], record, resumedWritten);
            if (marker) out.push(marker);
            m.ack();
            continue;
          }
          if (
            record.type === "status" && record.status === "running" &&
            recorder.status === "queued" && !out.some((r) => r.type === "status")
          ) {
            out.push({ type: "status", time: Date.now(), status: "running", step: recorder.step });
          }
          if (merger.add(shard, record)) unacked[shard].push({ m, seq: record.seq });
          else m.ack(); // a repeat
        }
        out.push(...merger.drain());
        if (!emit(out)) return;
        for (let i = 0; i < shards.length; i++) {
          const through = merger.mergedThrough(i);
          const keep: { m: JsMsg; seq: number }[] = [];
          for (const held of unacked[i]) {
            if (held.seq <= through) held.m.ack();
            else keep.push(held);
          }
          unacked[i] = keep;
        }
      } catch (e) {
        if (signal.aborted) break;
        const msg = e instanceof Error ? e.message : String(e);
        if (/consumer not found|stream not found/i.test(msg)) {
          // NATS lost its state (a server started afresh): the merge has what it merged, a
          // fresh consumer delivers again what is left and repeats are dropped.
          consumerReady = false;
          published = !/stream not found/i.test(msg) && published;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }

    const outcome = merger.outcome;
    if (outcome) {
      if (outcome.status !== "finished") await this.#cancel(run.id, shards);
      else await this.#lab?.jsm.consumers.delete(RECORDS_STREAM, consumer).catch(() => {});
      setStatus(recorder, outcome.status, outcome.error);
      return;
    }
    if (signal.reason === SHUTDOWN) return; // goes on on the workers; reattached next start
    await this.#cancel(run.id, shards);
    setStatus(recorder, "stopped");
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters) w();
    await this.#lab?.close().catch(() => {});
  }
}

/** The run's `resumed` event for a shard resumed on another worker (once per attempt). */
function resumedMarker(
  m: JsMsg,
  shard: number,
  range: ShardRange,
  record: BodyRecord,
  written: Set<string>,
): Unsequenced<BodyRecord> | undefined {
  if (record.type !== "event") return undefined;
  const id = m.headers?.get("Nats-Msg-Id") || `${shard}.${m.seq}`;
  const attempt = id.split(".").at(-1);
  const detail = `shard ${shard} (${replicasText(range)}) ${
    ("detail" in record.event && record.event.detail) || `resumed at step ${record.event.step}`
  } (attempt ${attempt})`;
  if (written.has(detail)) return undefined;
  written.add(detail);
  return {
    type: "event",
    time: record.time,
    event: { type: "resumed", step: record.event.step, detail },
  };
}

function setStatus(
  recorder: ExecutedRun["recorder"],
  status: "finished" | "failed" | "stopped",
  error?: string,
): void {
  try {
    recorder.setStatus(status, error);
  } catch (e) {
    if (!(e instanceof RunLogWriteError)) throw e;
  }
}
