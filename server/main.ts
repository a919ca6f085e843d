/**
 * `deno task serve`: the lab's API, stream and dashboard.
 *   --port=8420 --host=127.0.0.1 --data=./data --token=… (or LAB_TOKEN)
 *   --max-concurrent=N | BACKEND:N,…   runs computing at once per backend
 *   --threads=N                         workers one run's replicas are split across
 *                                       (default: cores − 1, at least 1)
 *   --max-run-mb=N                      largest estimated device memory of one run
 *   --max-run-disk-mb=N                 largest projected log size of one run (docs/storage.md)
 *   --max-queued=N                      runs waiting at once; more get 429 + Retry-After
 *   --allow-origin=ORIGIN[,ORIGIN…]     web pages (besides the lab's own) that may start,
 *                                       stop and delete runs and open the stream; repeatable
 *   --checkpoint-interval=SECONDS       compute time between a run's checkpoints (60; 0: off)
 *   --no-resume                         mark runs in flight at the last stop interrupted
 *   --wasm-fma=auto|off                 the wasm kernels' FMA build, or the strict one
 *   --nats=URL [--nats-creds=FILE] [--nats-token=T] [--shard-replicas=N]
 *   [--job-ack-wait=SECONDS] [--local-compute]  the multi-box coordinator (server/cluster/)
 * Listening on a non-loopback address without a token is refused: anyone who can reach the
 * port could otherwise start runs on this machine.
 */
import { applyWasmFmaFlag, commandFlags, exitWith, UsageError, WASM_FMA_HELP } from "./cli/args.ts";
import type { BackendName } from "./experiments/types.ts";
import { startLab } from "./api/server.ts";
import { backendReport } from "./api/health.ts";
import { formatBytes } from "./runs/manager.ts";
import { isLoopback, parseOrigin } from "./api/origin.ts";
import { checkpointIntervalMs } from "./runs/checkpoints.ts";
import { Coordinator } from "./cluster/coordinator.ts";
import { DEFAULT_JOB_ACK_WAIT_MS } from "./cluster/nats.ts";
import { LabWorker } from "./cluster/worker.ts";

const USAGE =
  `usage: deno task serve [--port=8420] [--host=127.0.0.1] [--data=./data] [--token=TOKEN]
       [--max-concurrent=N | BACKEND:N,...] [--threads=N] [--max-run-mb=N]
       [--max-run-disk-mb=N] [--max-queued=N] [--allow-origin=ORIGIN,...]
       [--checkpoint-interval=SECONDS] [--no-resume] [--wasm-fma=auto|off] [--nats=URL [--nats-creds=FILE]
       [--nats-token=TOKEN] [--shard-replicas=N] [--job-ack-wait=SECONDS] [--local-compute]]
  --threads=N splits a wasm or reference run's replicas across up to N workers (default:
  every core but one; at least 2 replicas per worker; shape-matters, pegr and
  linear-label-noise), with the same numbers as one; each of the --max-concurrent runs gets
  up to N.
  Runs write a checkpoint every SECONDS of compute (default 60, fractions allowed, 0: never)
  and at a graceful stop; on start, runs that were in flight continue from their checkpoint
  unless --no-resume (then they are marked interrupted; POST /api/runs/ID/resume later).
  --wasm-fma: ${WASM_FMA_HELP}.
  The token may also come from the LAB_TOKEN environment variable; it is required when
  --host is not a loopback address. Web pages from other origins may not start, stop or
  delete runs or open the stream; --allow-origin=http://host:port (repeatable, or a comma
  list) admits one.
  --nats=nats://host:4222 makes this lab a coordinator of several boxes (README, "Several
  boxes"): runs are stored and streamed here but computed by workers (deno task worker),
  split into shards of N replicas (--shard-replicas; default: by the live workers' total
  capacity); --local-compute also runs a worker inside this lab. Credentials:
  --nats-creds=FILE, --nats-token=TOKEN, user:pass@ in the URL, TLS with tls://. --job-ack-wait: seconds a silent worker keeps a job (default ${
    DEFAULT_JOB_ACK_WAIT_MS / 1000
  }).`;

/** Every --allow-origin=… (repeatable, each a comma list), normalised. */
export function allowedOrigins(argv: string[]): string[] {
  const out: string[] = [];
  for (const arg of argv) {
    if (arg === "--") break;
    if (arg !== "--allow-origin" && !arg.startsWith("--allow-origin=")) continue;
    const list = arg.slice("--allow-origin=".length);
    if (!list) {
      throw new UsageError("--allow-origin needs a value: --allow-origin=http://host:port");
    }
    for (const item of list.split(",")) {
      try {
        out.push(parseOrigin(item.trim()));
      } catch (e) {
        throw new UsageError(`--allow-origin: ${e instanceof Error ? e.message : e}`);
      }
    }
  }
  return [...new Set(out)];
}

function intFlag(flags: Map<string, string | true>, name: string, min: number, max: number) {
  const raw = flags.get(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw === true || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${raw}`);
  }
  return n;
}

export function parseConcurrency(raw: string): Partial<Record<BackendName, number>> {
  const backends: BackendName[] = ["webgpu", "wasm", "reference"];
  const out: Partial<Record<BackendName, number>> = {};
  const bad = () =>
    new UsageError(`--max-concurrent must be N or BACKEND:N,... (backends ${backends.join(", ")})`);
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (n < 1) throw bad();
    for (const b of backends) out[b] = n;
    return out;
  }
  for (const part of raw.split(",")) {
    const [name, value] = part.split(":");
    const n = Number(value);
    if (!backends.includes(name as BackendName) || !Number.isInteger(n) || n < 1) throw bad();
    out[name as BackendName] = n;
  }
  return out;
}

/** The multi-box coordinator the --nats flags ask for, not yet connected (start() does). */
function coordinatorFrom(flags: Map<string, string | true>): Coordinator | undefined {
  const value = (name: string) => {
    const raw = flags.get(name);
    if (raw === true) throw new UsageError(`--${name} needs a value`);
    return raw;
  };
  const url = value("nats");
  const dependents = [
    "nats-creds",
    "nats-token",
    "shard-replicas",
    "job-ack-wait",
    "local-compute",
  ];
  for (const dependent of dependents) {
    if (!url && flags.has(dependent)) {
      throw new UsageError(`--${dependent} needs --nats=URL (the multi-box mode)`);
    }
  }
  if (!url) return undefined;
  const ackWait = value("job-ack-wait");
  const ackWaitS = ackWait === undefined ? undefined : Number(ackWait);
  if (ackWaitS !== undefined && !(ackWaitS >= 1 && ackWaitS <= 86400)) {
    throw new UsageError(`--job-ack-wait must be seconds in [1, 86400], got ${ackWait}`);
  }
  return new Coordinator({
    nats: { url, creds: value("nats-creds"), token: value("nats-token") },
    shardReplicas: intFlag(flags, "shard-replicas", 1, 1 << 20),
    jobAckWaitMs: ackWaitS === undefined ? undefined : ackWaitS * 1000,
    checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
  });
}

async function main(argv: string[]): Promise<number> {
  const parsed = commandFlags(argv, [
    "port",
    "host",
    "data",
    "token",
    "max-concurrent",
    "threads",
    "max-run-mb",
    "max-run-disk-mb",
    "max-queued",
    "allow-origin",
    "checkpoint-interval",
    "no-resume",
    "nats",
    "nats-creds",
    "nats-token",
    "shard-replicas",
    "job-ack-wait",
    "local-compute",
    "wasm-fma",
  ], USAGE);
  if ("exit" in parsed) return parsed.exit;
  const { flags } = parsed;
  applyWasmFmaFlag(flags.get("wasm-fma"));
  const port = intFlag(flags, "port", 0, 65535) ?? 8420;
  const host = String(flags.get("host") ?? "127.0.0.1");
  const data = String(flags.get("data") ?? "./data");
  const tokenFlag = flags.get("token");
  if (tokenFlag === true) throw new UsageError("--token needs a value: --token=SECRET");
  const token = tokenFlag ?? Deno.env.get("LAB_TOKEN") ?? undefined;
  if (!token && !isLoopback(host)) {
    throw new UsageError(
      `refusing to listen on ${host} without a token: anyone who can reach it could start runs. ` +
        "Pass --token=SECRET or set LAB_TOKEN, or use --host=127.0.0.1.",
    );
  }
  const concurrency = flags.get("max-concurrent");
  const maxRunMb = intFlag(flags, "max-run-mb", 1, 1 << 30);
  const maxDiskMb = intFlag(flags, "max-run-disk-mb", 1, 1 << 30);
  const maxQueued = intFlag(flags, "max-queued", 0, 1 << 20);
  const threads = intFlag(flags, "threads", 1, 1024);
  const allowOrigins = allowedOrigins(argv);
  const coordinator = coordinatorFrom(flags);

  let lab;
  try {
    lab = await startLab({
      port,
      hostname: host,
      token: token || undefined,
      allowOrigins,
      dataDir: data,
      maxConcurrent: typeof concurrency === "string" ? parseConcurrency(concurrency) : undefined,
      memoryLimitBytes: maxRunMb ? maxRunMb * 2 ** 20 : undefined,
      diskLimitBytes: maxDiskMb ? maxDiskMb * 2 ** 20 : undefined,
      maxQueued,
      threads,
      checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
      resume: !flags.has("no-resume"),
      executor: coordinator,
      cluster: coordinator,
    });
  } catch (e) {
    await coordinator?.close();
    if (e instanceof Deno.errors.AddrInUse) {
      throw new UsageError(
        `port ${port} on ${host} is already in use (another lab?); choose one with --port=N`,
      );
    }
    throw e;
  }
  console.log(`lab listening on ${lab.url} (data: ${data}, auth: ${token ? "token" : "none"})`);
  const report = await backendReport();
  const list = Object.entries(report.backends)
    .map(([n, p]) => `${n}: ${p.available ? p.adapter : `unavailable (${p.reason ?? "?"})`}`)
    .join("; ");
  console.log(`backends: ${list}; auto → ${report.default_backend}`);
  console.log(
    `run limits: ${formatBytes(lab.manager.memoryLimitBytes)} device memory, ${
      formatBytes(lab.manager.diskLimitBytes)
    } of log, ${lab.manager.maxQueued} queued`,
  );
  if (allowOrigins.length) console.log(`pages also admitted from: ${allowOrigins.join(", ")}`);
  coordinator?.start();
  // --local-compute: this box is also a worker (its jobs come through NATS like any other's).
  const localWorker = coordinator && flags.has("local-compute")
    ? await LabWorker.open({
      nats: coordinator.settings,
      backend: "auto",
      checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
      jobAckWaitMs: coordinator.jobAckWaitMs,
      log: (line) => console.error(`local worker: ${line}`),
    })
    : undefined;
  localWorker?.begin().catch((e) => console.error(`local worker: ${(e as Error).message}`));

  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const onSignal = () => resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await stopped;
  console.log(
    coordinator
      ? "shutting down: runs go on on the workers and are taken up again at the next start"
      : "shutting down: runs in flight checkpoint and are marked interrupted",
  );
  await localWorker?.stop();
  await lab.shutdown();
  await coordinator?.close();
  return 0;
}

if (import.meta.main) {
  // Last resort: a bug in one request or run is logged, and the lab goes on serving the rest.
  globalThis.addEventListener("unhandledrejection", (e) => {
    console.error("unhandled rejection:", e.reason);
    e.preventDefault();
  });
  await exitWith(main);
}
