/**
 * The lab's use of NATS JetStream in the multi-box mode (docs/protocol.md, "Several boxes"):
 * one connection helper with clear one-line errors, and the names and settings of every
 * stream, consumer and bucket the coordinator and the workers share. Both sides call
 * ensureLabStreams(), so whichever starts first creates them and neither depends on the other
 * having run.
 *
 *   LAB_JOBS      work-queue stream on `lab.jobs`: one message per job (a run or a shard of
 *                 one); workers pull through the durable consumer `lab-workers`, report
 *                 progress while they hold a job, and ack it when it is done. A job whose
 *                 worker stops reporting is redelivered after the ack wait.
 *   LAB_RECORDS   stream with limits on `lab.runs.*.records`: each run's records, msgpack, as
 *                 the WebSocket stream carries them.
 *   lab_workers   key-value bucket, one key per worker (its announcement), expiring when the
 *                 worker stops heartbeating.
 *   lab_jobs      key-value bucket of job outcomes, written once per job (create): a job is
 *                 finished exactly once even when a slow worker comes back.
 *   lab_checkpoints  object store of job checkpoints, one object per job.
 */
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type ObjectStore, Objm } from "@nats-io/obj";

export const JOBS_STREAM = "LAB_JOBS";
export const JOBS_SUBJECT = "lab.jobs";
export const JOBS_CONSUMER = "lab-workers";
export const RECORDS_STREAM = "LAB_RECORDS";
export const RECORDS_SUBJECTS = "lab.runs.*.records";
export const WORKERS_BUCKET = "lab_workers";
export const JOB_OUTCOMES_BUCKET = "lab_jobs";
export const CHECKPOINTS_BUCKET = "lab_checkpoints";

/** The subject a run's records are published on. */
export function recordsSubject(run: string): string {
  return `lab.runs.${run}.records`;
}

/** Default ack wait of a job: how long a silent worker keeps its job before redelivery. */
export const DEFAULT_JOB_ACK_WAIT_MS = 30_000;
/** How long a worker's announcement outlives its last heartbeat. */
export const DEFAULT_WORKER_TTL_MS = 15_000;
/** Limits of the records stream: the oldest records go first once either is reached. */
export const DEFAULT_RECORDS_MAX_BYTES = 2 ** 30;
export const DEFAULT_RECORDS_MAX_AGE_MS = 7 * 24 * 3600_000;
/** Publishes with the same message id inside this window are stored once. */
export const DUPLICATE_WINDOW_MS = 120_000;

export interface NatsSettings {
  /** nats://host:port[,nats://…]; user:password@ or token@ in the URL are passed on. */
  url: string;
  /** Path of a .creds file (JWT + NKey seed). */
  creds?: string;
  /** Token for servers that use token authentication. */
  token?: string;
  /** Connection name shown by the server's monitoring (e.g. "lab-worker box1"). */
  name?: string;
  /** Keep reconnecting forever (servers, workers) instead of failing after a few tries. */
  persistent?: boolean;
}

/** A NATS problem as one line a user can act on (never a stack trace). */
export class NatsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NatsError";
  }
}

const NS = 1_000_000;

/** Connection options from settings: servers, credentials, token, TLS from `tls://` URLs. */
export async function connectionOptions(s: NatsSettings): Promise<ConnectionOptions> {
  const servers = s.url.split(",").map((u) => u.trim()).filter((u) => u.length > 0);
  if (servers.length === 0) throw new NatsError("--nats needs a URL such as nats://127.0.0.1:4222");
  const opts: ConnectionOptions = {
    servers,
    name: s.name,
    maxReconnectAttempts: s.persistent ? -1 : 3,
    reconnectTimeWait: 1000,
    waitOnFirstConnect: false,
  };
  if (servers.some((u) => u.startsWith("tls://"))) opts.tls = {};
  if (s.token) opts.token = s.token;
  if (s.creds) {
    let text: string;
    try {
      text = await Deno.readTextFile(s.creds);
    } catch (e) {
      throw new NatsError(`cannot read the NATS credentials file: ${(e as Error).message}`);
    }
    const { credsAuthenticator } = await import("@nats-io/transport-node");
    opts.authenticator = credsAuthenticator(new TextEncoder().encode(text));
  }
  return opts;
}

/** Turns an error of the NATS client into one line naming what to check. */
export function describeNatsError(e: unknown, url: string): string {
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string })?.code ?? "";
  if (/CONNECTION_REFUSED|ECONNREFUSED|connection refused/i.test(`${code} ${msg}`)) {
    return `NATS is not reachable at ${url} (connection refused): is nats-server running?`;
  }
  if (/AUTHORIZATION|authorization|authentication/i.test(`${code} ${msg}`)) {
    return `NATS at ${url} refused the credentials (${msg}): check --nats-creds / --nats-token`;
  }
  if (/permission/i.test(msg)) {
    return `NATS refused an operation: ${msg} (the user needs publish/subscribe on lab.> and $JS.API.>)`;
  }
  if (/jetstream not enabled|JetStream not enabled|503/i.test(`${code} ${msg}`)) {
    return `NATS at ${url} has no JetStream: start nats-server with -js (and -sd DIR)`;
  }
  return `NATS at ${url}: ${msg}`;
}

export interface LabNats {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  workers: KV;
  outcomes: KV;
  checkpoints: ObjectStore;
  close(): Promise<void>;
}

export interface StreamSettings {
  jobAckWaitMs?: number;
  workerTtlMs?: number;
  recordsMaxBytes?: number;
  recordsMaxAgeMs?: number;
}

/** Connects and makes sure the lab's streams, consumer and buckets exist. */
export async function connectLab(s: NatsSettings, streams: StreamSettings = {}): Promise<LabNats> {
  let nc: NatsConnection;
  try {
    nc = await connect(await connectionOptions(s));
  } catch (e) {
    if (e instanceof NatsError) throw e;
    throw new NatsError(describeNatsError(e, s.url));
  }
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await ensureLabStreams(jsm, streams);
    const kvm = new Kvm(nc);
    const workers = await kvm.create(WORKERS_BUCKET, {
      ttl: streams.workerTtlMs ?? DEFAULT_WORKER_TTL_MS,
      history: 1,
    });
    const outcomes = await kvm.create(JOB_OUTCOMES_BUCKET, { history: 1 });
    const checkpoints = await new Objm(nc).create(CHECKPOINTS_BUCKET);
    return {
      nc,
      js,
      jsm,
      workers,
      outcomes,
      checkpoints,
      close: async () => {
        await nc.drain().catch(() => nc.close());
      },
    };
  } catch (e) {
    await nc.close().catch(() => {});
    throw new NatsError(describeNatsError(e, s.url));
  }
}

/** Adds (or updates to these settings) the jobs and records streams and the jobs consumer. */
export async function ensureLabStreams(
  jsm: JetStreamManager,
  s: StreamSettings = {},
): Promise<void> {
  const jobs = {
    name: JOBS_STREAM,
    subjects: [JOBS_SUBJECT],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: DUPLICATE_WINDOW_MS * NS,
  };
  const records = {
    name: RECORDS_STREAM,
    subjects: [RECORDS_SUBJECTS],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_bytes: s.recordsMaxBytes ?? DEFAULT_RECORDS_MAX_BYTES,
    max_age: (s.recordsMaxAgeMs ?? DEFAULT_RECORDS_MAX_AGE_MS) * NS,
    duplicate_window: DUPLICATE_WINDOW_MS * NS,
  };
  for (const cfg of [jobs, records]) {
    try {
      await jsm.streams.info(cfg.name);
      await jsm.streams.update(cfg.name, cfg);
    } catch (e) {
      if (!/stream not found/i.test((e as Error).message)) throw e;
      await jsm.streams.add(cfg);
    }
  }
  const consumer = {
    durable_name: JOBS_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: (s.jobAckWaitMs ?? DEFAULT_JOB_ACK_WAIT_MS) * NS,
    max_deliver: -1,
    max_ack_pending: 10_000,
  };
  try {
    const info = await jsm.consumers.info(JOBS_STREAM, JOBS_CONSUMER);
    // Only a side that was given --job-ack-wait changes it: a coordinator or worker started
    // without it keeps the one set before (else whoever connects last would reset it).
    if (s.jobAckWaitMs === undefined && info.config.ack_wait) {
      consumer.ack_wait = info.config.ack_wait;
    }
    await jsm.consumers.update(JOBS_STREAM, JOBS_CONSUMER, consumer);
  } catch (e) {
    if (!/consumer not found/i.test((e as Error).message)) throw e;
    await jsm.consumers.add(JOBS_STREAM, consumer);
  }
}
