/**
 * `deno task bench --cluster` (or `deno run -A test/bench_cluster.ts`): the multi-box mode on
 * this machine, all real processes (nats-server, a coordinator, wasm workers). Reported, never
 * asserted:
 *  - records/s through NATS: an every=1 run computed by one worker and merged by the
 *    coordinator into its log, against the same run computed by a plain lab (one box);
 *  - the wall time of a sweep (3 shards) with 1, 2 and 3 workers of capacity 1, and on one box.
 * Workers on one machine share its cores: with C cores, more than C − 1 workers (the
 * coordinator and NATS need some) cannot go faster, so this measures the plumbing's overhead and
 * scaling up to the core count, not a cluster's.
 * Flags: --steps=N (every=1 run, default 20000)  --sweep-steps=N (default 100000)  --json
 */
import { parseCliArgs } from "../server/cli/args.ts";
import { type ServerProcess, startServerProcess, submit, waitFor } from "./lab_harness.ts";
import { startNats } from "./nats_harness.ts";
import { startWorkerProcess, type WorkerProcess } from "./nats_test_server.ts";

const { flags } = parseCliArgs(Deno.args);

function everyOneSpec(steps: number) {
  return {
    experiment: "shape-matters",
    params: { d: 20, n: 10 },
    // 2 replicas: one shard under --shard-replicas=2, so both sides compute the same batch.
    replicas: 2,
    steps,
    every: 1,
    backend: "wasm",
  };
}

function sweepSpec(steps: number) {
  return {
    experiment: "shape-matters",
    params: { d: 100, n: 40, algo: "label-noise" },
    grid: { delta: [0.5, 1, 2] },
    seeds: 2,
    steps,
    every: Math.max(1, Math.floor(steps / 200)),
    backend: "wasm",
  };
}

async function json(url: string) {
  return await (await fetch(url)).json();
}

/** Submits `spec` and waits for it to finish: seconds from submit, and records stored. */
async function timeRun(
  server: ServerProcess,
  spec: unknown,
): Promise<{ s: number; records: number }> {
  const t0 = performance.now();
  const id = await submit(server.url, spec);
  const detail = await waitFor(
    async () => {
      const d = await json(`${server.url}/api/runs/${id}`);
      if (d.status === "failed") throw new Error(`run failed: ${d.error}`);
      return d.status === "finished" ? d : undefined;
    },
    `run ${id}`,
    600_000,
    50,
  );
  return { s: (performance.now() - t0) / 1000, records: detail.last_seq };
}

async function stopProcess(p: ServerProcess): Promise<void> {
  p.child.kill("SIGTERM");
  await p.child.status;
}

function startWorkers(url: string, n: number): WorkerProcess[] {
  return Array.from(
    { length: n },
    () => startWorkerProcess(url, ["--backend=wasm", "--capacity=1"]),
  );
}

async function stopWorkers(workers: WorkerProcess[]): Promise<void> {
  for (const w of workers) w.kill("SIGTERM");
  await Promise.all(workers.map((w) => w.status));
}

export async function benchCluster(opts: { steps: number; sweepSteps: number; json: boolean }) {
  const out: Record<string, unknown> = {
    cores: navigator.hardwareConcurrency,
    every_one_steps: opts.steps,
    sweep_steps: opts.sweepSteps,
  };
  const say = (line: string) => opts.json || console.log(line);
  const dirs: string[] = [];
  const tempDir = async () => {
    const d = await Deno.makeTempDir({ prefix: "lab-bench-cluster-" });
    dirs.push(d);
    return d;
  };
  const nats = await startNats();
  try {
    // One box: the same runs on a plain lab.
    const plain = await startServerProcess(await tempDir(), []);
    try {
      const r = await timeRun(plain, everyOneSpec(opts.steps));
      out.one_box_records_per_s = r.records / r.s;
      say(
        `every=1, one box:           ${r.records} records in ${r.s.toFixed(2)} s = ${
          (r.records / r.s).toFixed(0)
        } records/s`,
      );
      const sw = await timeRun(plain, sweepSpec(opts.sweepSteps));
      out.one_box_sweep_s = sw.s;
      say(`sweep (6 replicas), one box: ${sw.s.toFixed(2)} s`);
    } finally {
      await stopProcess(plain);
    }

    const coord = await startServerProcess(await tempDir(), [
      `--nats=${nats.url}`,
      "--shard-replicas=2",
    ]);
    try {
      await waitFor(async () => (await json(`${coord.url}/api/health`)).nats?.connected, "NATS");
      for (const n of [1, 2, 3]) {
        const workers = startWorkers(nats.url, n);
        try {
          await waitFor(
            async () => (await json(`${coord.url}/api/workers`)).length === n,
            `${n} workers`,
          );
          if (n === 1) {
            const r = await timeRun(coord, everyOneSpec(opts.steps));
            out.nats_records_per_s = r.records / r.s;
            say(
              `every=1, through NATS:     ${r.records} records in ${r.s.toFixed(2)} s = ${
                (r.records / r.s).toFixed(0)
              } records/s`,
            );
          }
          const sw = await timeRun(coord, sweepSpec(opts.sweepSteps));
          out[`sweep_${n}_workers_s`] = sw.s;
          say(`sweep (3 shards), ${n} worker(s): ${sw.s.toFixed(2)} s`);
        } finally {
          await stopWorkers(workers);
        }
      }
    } finally {
      await stopProcess(coord);
    }
  } finally {
    await nats.close();
    for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
  if (opts.json) console.log(JSON.stringify({ cluster: out }));
  return out;
}

if (import.meta.main) {
  await benchCluster({
    steps: Number(flags.get("steps") ?? 20_000),
    sweepSteps: Number(flags.get("sweep-steps") ?? 100_000),
    json: flags.has("json"),
  });
}
