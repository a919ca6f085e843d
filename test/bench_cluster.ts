/**
 * `deno task bench --cluster` (or `deno run -A test/bench_cluster.ts`): the multi-box mode on
 * this machine, all real processes (nats-server, a coordinator, wasm workers). Reported, never
 * asserted:
 *  - records/s through NATS: an every=1 run computed by one worker and merged by the
 *    coordinator into its log, against the same run computed by a plain lab (one box);
 *  - the wall time of a sweep (3 shards) with 1, 2 and 3 workers of capacity 1, and on one box;
 *  - the coordinator's own ingest: records/s it merges and stores from a publisher that keeps
 *    500 publishes in flight (no kernel): which side bounds the every=1 rate.
 * Workers on one machine share its cores: with C cores, more than C − 1 workers (the
 * coordinator and NATS need some) cannot go faster, so this measures the plumbing's overhead and
 * scaling up to the core count, not a cluster's.
 * Flags: --steps=N (every=1 run, default 20000)  --sweep-steps=N (default 100000)  --json
 */
import { parseCliArgs } from "../server/cli/args.ts";
import { type ServerProcess, startServerProcess, submit, waitFor } from "./lab_harness.ts";
import { startNats } from "./nats_harness.ts";
import { startWorkerProcess, type WorkerProcess } from "./nats_test_server.ts";
import { connectLab, JOBS_CONSUMER, JOBS_STREAM, recordsSubject } from "../server/cluster/nats.ts";
import { encodeRecord } from "../server/runs/records.ts";
import { headers } from "@nats-io/transport-node";

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

/** Records/s the coordinator merges and stores when the records come as fast as NATS takes them. */
async function ingest(coord: ServerProcess, url: string, steps: number): Promise<number> {
  const pub = await connectLab({ url, name: "bench-publisher" });
  try {
    const spec = everyOneSpec(steps);
    const id = await submit(coord.url, spec);
    const jobs = await pub.js.consumers.get(JOBS_STREAM, JOBS_CONSUMER);
    const job = await waitFor(async () => await jobs.next({ expires: 1000 }), "the job");
    job?.ack(); // taken here: no worker computes it
    const metrics = {
      train_loss: new Float32Array(spec.replicas),
      test_error: new Float32Array(spec.replicas),
      v_norm: new Float32Array(spec.replicas),
      support_size: new Float32Array(spec.replicas),
    };
    type Published = { seq: number } & Record<string, unknown>;
    const records: Published[] = [{ type: "status", seq: 1, time: 0, status: "running", step: 0 }];
    for (let step = 0; step <= steps; step++) {
      records.push({
        type: "snapshot",
        seq: records.length + 1,
        step,
        wall_ms: step,
        time: 0,
        metrics,
      });
    }
    records.push({
      type: "status",
      seq: records.length + 1,
      time: 0,
      status: "finished",
      step: steps,
    });
    const t0 = performance.now();
    for (let i = 0; i < records.length; i += 500) {
      await Promise.all(
        records.slice(i, i + 500).map((r) => {
          const h = headers();
          h.set("Lab-Shard", "0");
          return pub.js.publish(recordsSubject(id), encodeRecord(r), {
            msgID: `${id}.0.${r.seq}`,
            headers: h,
          });
        }),
      );
    }
    await waitFor(
      async () => (await json(`${coord.url}/api/runs/${id}`)).status === "finished",
      "the ingested run",
      600_000,
      20,
    );
    return records.length / ((performance.now() - t0) / 1000);
  } finally {
    await pub.close();
  }
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
      // Ingest alone: a publisher stands in for the worker, as fast as NATS takes it.
      const r = await ingest(coord, nats.url, opts.steps);
      out.coordinator_ingest_records_per_s = r;
      say(
        `coordinator ingest:        ${r.toFixed(0)} records/s (no kernel, 500 publishes in flight)`,
      );
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
