/**
 * The multi-box mode end to end, all real processes: nats-server with JetStream, a
 * coordinator (`server/main.ts --nats`), three workers (`server/worker_main.ts`, wasm). A
 * sweep sharded over them; one worker SIGKILLed mid-shard (its job goes to another worker
 * after the ack wait and continues from its checkpoint); the coordinator SIGKILLed mid-sweep
 * and restarted. The run must finish with every record exactly once and its CSV equal to the
 * same sweep run on one box (wall-clock column aside).
 */
import assert from "node:assert/strict";
import { startServerProcess, startTestLab, submit, waitFor } from "./lab_harness.ts";
import { startNats } from "./nats_harness.ts";
import { startWorkerProcess, type WorkerProcess } from "./nats_test_server.ts";
import { connectLab } from "../server/cluster/nats.ts";
import { decodeCheckpoint } from "../server/runs/checkpoints.ts";

/** 3 settings × 2 seeds of label-noise SGD: 6 replicas, 3 shards of 2. */
const SWEEP = {
  experiment: "shape-matters",
  params: { d: 100, n: 40, algo: "label-noise" },
  grid: { delta: [0.5, 1, 2] },
  seeds: 2,
  // Long enough that a worker is still mid-shard when the test looks for one on a quiet
  // machine (each shard several seconds), short enough for CI.
  steps: 1_200_000,
  every: 6000,
  backend: "wasm",
};
const ACK_WAIT = "--job-ack-wait=3";

async function csvOf(base: string, id: string): Promise<string[]> {
  const text = await (await fetch(`${base}/api/runs/${id}/metrics.csv`)).text();
  const rows = text.trim().split("\n").map((l) => l.split(","));
  const wall = rows[0].indexOf("wall_ms");
  assert.ok(wall >= 0, `the CSV has a wall_ms column: ${rows[0]}`);
  return rows.map((r) => r.filter((_, i) => i !== wall).join(","));
}

async function json(url: string) {
  return await (await fetch(url)).json();
}

Deno.test("a sweep sharded over three workers survives a worker and a coordinator SIGKILL and equals the one-box run", async () => {
  // The one-box run first, alone on the machine.
  const one = await startTestLab();
  let expected: string[];
  try {
    const id = await submit(one.url, SWEEP);
    await waitFor(() => one.manager.status(id) === "finished", "the one-box sweep", 120_000);
    expected = await csvOf(one.url, id);
  } finally {
    await one.close();
  }

  const nats = await startNats();
  const dataDir = await Deno.makeTempDir({ prefix: "lab-e2e-" });
  const coordArgs = [`--nats=${nats.url}`, "--shard-replicas=2", ACK_WAIT];
  const startCoordinator = async () => {
    const server = await startServerProcess(dataDir, coordArgs);
    await waitFor(
      async () => (await json(`${server.url}/api/health`)).nats?.connected,
      "the coordinator to connect to NATS",
    );
    return server;
  };
  let server = await startCoordinator();
  const workers: WorkerProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      workers.push(
        startWorkerProcess(nats.url, [
          "--backend=wasm",
          "--capacity=1",
          "--checkpoint-interval=0.3",
          ACK_WAIT,
        ]),
      );
    }
    await waitFor(
      async () => (await json(`${server.url}/api/workers`)).length === 3,
      "three workers listed by the coordinator",
    );
    const id = await submit(server.url, SWEEP);

    // A worker mid-shard: it holds a job whose outcome is not written yet (announcements may
    // be 2 s old; the outcome is what says a job is done), and of those the one whose shard's
    // checkpoint is least advanced and before the middle: under load the shards run at
    // different speeds, and a shard killed after its last record has nothing left to resume.
    const probe = await connectLab({ url: nats.url, name: "e2e-probe" });
    let victim: WorkerProcess | undefined;
    try {
      victim = await waitFor(async () => {
        const list: { id: string; running: string[] }[] = await json(`${server.url}/api/workers`);
        let best: { process: WorkerProcess; step: number } | undefined;
        for (const w of list) {
          const key = w.running[0];
          if (!key || await probe.outcomes.get(key)) continue;
          const bytes = await probe.checkpoints.getBlob(key).catch(() => null);
          const decoded = bytes ? await decodeCheckpoint(bytes) : undefined;
          if (!decoded || !("checkpoint" in decoded)) continue;
          const step = decoded.checkpoint.step;
          const process = workers.find((p) => w.id.includes(`-${p.child.pid}-`));
          if (process && (!best || step < best.step)) best = { process, step };
        }
        return best && best.step < SWEEP.steps / 2 ? best.process : undefined;
      }, "a worker computing a shard, checkpointed before its middle");
    } finally {
      await probe.close();
    }
    victim.kill("SIGKILL");
    await victim.status;

    // The coordinator killed once the sweep has gone on, then restarted on its data.
    const seqAtKill = (await json(`${server.url}/api/runs/${id}`)).last_seq as number;
    await waitFor(
      async () => (await json(`${server.url}/api/runs/${id}`)).last_seq > seqAtKill + 5,
      "the sweep to go on after the worker died",
    );
    server.child.kill("SIGKILL");
    await server.child.status;
    server = await startCoordinator();

    await waitFor(
      async () => (await json(`${server.url}/api/runs/${id}`)).status === "finished",
      "the sweep to finish",
      180_000,
    );
    const detail = await json(`${server.url}/api/runs/${id}`);
    assert.equal(detail.error, undefined);
    assert.deepEqual(await csvOf(server.url, id), expected, "the CSV equals the one-box run's");

    // Every record exactly once: seqs 1..n, snapshot steps each once and in order, and the
    // killed worker's shard resumed on another one.
    server.child.kill("SIGTERM");
    await server.child.status;
    const reader = await startTestLab({ dataDir });
    try {
      const records = await reader.manager.allRecords(id);
      assert.deepEqual(records.map((r) => r.seq), records.map((_, i) => i + 1));
      const steps = records.flatMap((r) => r.type === "snapshot" ? [r.step] : []);
      assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b));
      assert.equal(steps.length, SWEEP.steps / SWEEP.every + 1);
      const resumed = records.filter((r) => r.type === "event" && r.event.type === "resumed");
      assert.ok(resumed.length >= 1, "the killed worker's shard was resumed elsewhere");
      const statuses = records.flatMap((r) => r.type === "status" ? [r.status] : []);
      assert.deepEqual(statuses, ["queued", "running", "finished"]);
    } finally {
      await reader.shutdown();
    }
  } finally {
    for (const w of workers) w.kill("SIGKILL");
    await Promise.all(workers.map((w) => w.status));
    try {
      server.child.kill("SIGKILL");
    } catch { /* ended */ }
    await server.child.status;
    await nats.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
