/**
 * `deno task worker --nats=URL`: a compute box of the multi-box mode (server/cluster/worker.ts,
 * docs/protocol.md "Records on NATS subjects"). Pulls jobs from NATS JetStream, runs them,
 * publishes their records; SIGINT or SIGTERM checkpoints the jobs in flight, hands them back
 * and exits 0 (a second signal, a second or more later, exits at once, leaving them to the
 * ack wait).
 */
import { applyWasmFmaFlag, commandFlags, exitWith, UsageError, WASM_FMA_HELP } from "./cli/args.ts";
import type { BackendChoice } from "./experiments/types.ts";
import { BACKEND_CHOICES } from "./experiments/registry.ts";
import { checkpointIntervalMs } from "./runs/checkpoints.ts";
import { LabWorker } from "./cluster/worker.ts";

const USAGE = `usage: deno task worker --nats=URL [--backend=auto|wasm|webgpu|reference]
       [--capacity=N] [--threads=N] [--nats-creds=FILE] [--nats-token=TOKEN]
       [--checkpoint-interval=SECONDS] [--job-ack-wait=SECONDS] [--wasm-fma=auto|off]
  Pulls jobs (runs, or shards of a run's replicas) from NATS JetStream at URL
  (nats://host:4222; tls://… for TLS; user:password@ or token@ in the URL are passed on),
  computes up to N at once and publishes their records on lab.runs.<id>.records.
  --backend      for jobs whose spec says auto (default auto: WebGPU on a hardware adapter,
                 else Wasm-SIMD); a spec naming a backend this box lacks goes back to the
                 queue for another worker (and fails on its third delivery).
  --capacity=N   jobs computed at once; default 1 on WebGPU, else (cores − 1) / threads.
  --threads=N    workers per job (default 1): a wasm or reference job's replicas split
                 across N threads as serve --threads does (shape-matters, pegr,
                 linear-label-noise; at least 2 replicas per thread), with the same numbers.
  --checkpoint-interval=SECONDS  compute time between a job's checkpoints in the object
                 store (default: the job's setting, else 60; 0: only when handed back).
  --job-ack-wait=SECONDS  sets the jobs consumer's ack wait: how long a silent worker keeps
                 a job before it is redelivered (shared by all workers; without the flag
                 the value set before stays, 30 for a new consumer).
  --wasm-fma     ${WASM_FMA_HELP}.
  SIGINT/SIGTERM: checkpoint the jobs in flight, hand them back, exit 0 (a second signal, a
  second or more later, exits at once).`;

/** Signals closer than this to the first are the same request (see onSignal). */
const SECOND_SIGNAL_MS = 1000;

function positiveInt(flags: Map<string, string | true>, name: string): number | undefined {
  const raw = flags.get(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw === true || !Number.isInteger(n) || n < 1 || n > 1024) {
    throw new UsageError(`--${name} must be an integer in [1, 1024], got ${raw}`);
  }
  return n;
}

function stringFlag(flags: Map<string, string | true>, name: string): string | undefined {
  const raw = flags.get(name);
  if (raw === true || raw === "") throw new UsageError(`--${name} needs a value: --${name}=…`);
  return raw;
}

async function main(argv: string[]): Promise<number> {
  const parsed = commandFlags(argv, [
    "nats",
    "backend",
    "capacity",
    "threads",
    "nats-creds",
    "nats-token",
    "checkpoint-interval",
    "job-ack-wait",
    "wasm-fma",
  ], USAGE);
  if ("exit" in parsed) return parsed.exit;
  const { flags } = parsed;
  applyWasmFmaFlag(flags.get("wasm-fma"));
  const url = stringFlag(flags, "nats");
  if (!url) throw new UsageError(`--nats=URL is required (e.g. nats://127.0.0.1:4222)\n${USAGE}`);
  const backend = (stringFlag(flags, "backend") ?? "auto") as BackendChoice;
  if (!BACKEND_CHOICES.includes(backend)) {
    throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(", ")}, got ${backend}`);
  }
  const capacity = positiveInt(flags, "capacity");
  const threads = positiveInt(flags, "threads");
  const ackWait = flags.get("job-ack-wait");
  let jobAckWaitMs: number | undefined;
  if (ackWait !== undefined) {
    const s = Number(ackWait);
    if (ackWait === true || !Number.isFinite(s) || s < 1) {
      throw new UsageError(`--job-ack-wait must be a number of seconds ≥ 1, got ${ackWait}`);
    }
    jobAckWaitMs = s * 1000;
  }
  // Signals count from here: a worker still waiting for NATS stops as cleanly as a busy one.
  const { promise: signalled, resolve } = Promise.withResolvers<void>();
  let firstSignal = 0;
  const onSignal = () => {
    // Ctrl-C reaches the worker twice at once (the terminal signals the whole process group,
    // and `deno task` forwards it too): only a signal a moment after the first means "now".
    if (firstSignal && Date.now() - firstSignal > SECOND_SIGNAL_MS) {
      console.error("lab worker: second signal: exiting now; its jobs return after the ack wait");
      Deno.exit(1);
    }
    firstSignal ||= Date.now();
    resolve();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const worker = await LabWorker.open({
    nats: {
      url,
      creds: stringFlag(flags, "nats-creds"),
      token: stringFlag(flags, "nats-token"),
    },
    backend,
    capacity,
    threads,
    checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
    jobAckWaitMs,
  });
  // begin() rejects only on what retrying cannot mend (credentials refused).
  await Promise.race([signalled, worker.begin().then(() => signalled)]);
  const n = worker.running.length;
  console.error(
    `lab worker: stopping: ${
      n ? `checkpointing and handing back ${n} job(s)` : "no jobs in flight"
    }`,
  );
  await worker.stop();
  return 0;
}

if (import.meta.main) {
  globalThis.addEventListener("unhandledrejection", (e) => {
    console.error(`lab worker: ${e.reason instanceof Error ? e.reason.message : e.reason}`);
    e.preventDefault();
  });
  await exitWith(main);
}
