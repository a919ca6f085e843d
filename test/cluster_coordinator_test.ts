/**
 * The multi-box coordinator (server/cluster/coordinator.ts) against a real nats-server and a
 * FAKE worker written here: it takes the coordinator's jobs from LAB_JOBS and publishes, per
 * the contract (/docs/protocol.md, "Several boxes"), each shard's records cut out of the same
 * run computed on one box. So the merged run must equal the one-box run record for record,
 * whatever order, repeats or coordinator crashes the records meet on the way.
 */
import assert from "node:assert/strict";
import { startServerProcess, startTestLab, submit, type TestLab, waitFor } from "./lab_harness.ts";
import { freePort, type NatsServer, startNats } from "./nats_harness.ts";
import { Coordinator, planFor } from "../server/cluster/coordinator.ts";
import {
  connectLab,
  JOBS_CONSUMER,
  JOBS_STREAM,
  type LabNats,
  recordsSubject,
} from "../server/cluster/nats.ts";
import { type BodyRecord, encodeRecord } from "../server/runs/records.ts";
import { headers as natsHeaders } from "@nats-io/transport-node";

/** Small and quick on the Wasm backend; a planned LR change and frames included. */
const SPEC = {
  experiment: "shape-matters",
  params: { d: 12, n: 8, lr_schedule: [[400, 0.5]] },
  replicas: 6,
  steps: 1000,
  every: 50,
  backend: "wasm",
};

interface Job {
  run: string;
  shard: number;
  shards: number;
  first: number;
  count: number;
  spec: { replicas: number };
}

/** The one-box run of SPEC (a plain lab), plus one replica event to check replica offsets. */
async function oneBoxRun(): Promise<BodyRecord[]> {
  const lab = await startTestLab();
  try {
    const id = await submit(lab.url, SPEC);
    await waitFor(() => lab.manager.status(id) === "finished", "the one-box run");
    const records = await lab.manager.allRecords(id);
    const at = records.findIndex((r) => r.type === "snapshot" && r.step === 300);
    records.splice(at, 0, {
      type: "event",
      seq: 0,
      time: 0,
      event: { type: "phase_change", phase: "test", replica: 3, step: 300 },
    });
    return records;
  } finally {
    await lab.close();
  }
}

/** Shard `first..first+count-1` of the one-box run as its worker would publish it. */
function shardRecords(oneBox: BodyRecord[], first: number, count: number): BodyRecord[] {
  const out: BodyRecord[] = [];
  for (const r of oneBox) {
    if (r.type === "snapshot") {
      const metrics: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(r.metrics)) metrics[k] = v.slice(first, first + count);
      out.push({ ...r, metrics });
    } else if (r.type === "frame") {
      out.push({ ...r, values: r.values.slice(first * r.width, (first + count) * r.width) });
    } else if (r.type === "event") {
      const replica = (r.event as { replica?: number }).replica;
      if (replica === undefined) out.push(r);
      else if (replica >= first && replica < first + count) {
        out.push({ ...r, event: { ...r.event, replica: replica - first } as typeof r.event });
      }
    } else if (r.type === "status" && (r.status === "running" || r.status === "finished")) {
      out.push(r);
    }
  }
  return out.map((r, i) => ({ ...r, seq: i + 1 }));
}

/** A fake worker: its NATS side, the jobs it took, and a publisher of shard records. */
class FakeWorker {
  jobs: Job[] = [];
  constructor(readonly lab: LabNats) {}

  static async connect(url: string): Promise<FakeWorker> {
    return new FakeWorker(await connectLab({ url, name: "fake-worker" }));
  }

  /** Takes jobs from the queue until `n` have come (acknowledged at once: a fake computes nothing). */
  async takeJobs(n: number): Promise<Job[]> {
    const consumer = await this.lab.js.consumers.get(JOBS_STREAM, JOBS_CONSUMER);
    await waitFor(async () => {
      const m = await consumer.next({ expires: 1000 });
      if (m) {
        this.jobs.push(m.json<Job>());
        m.ack();
      }
      return this.jobs.length >= n;
    }, `${n} jobs on the queue`);
    return this.jobs.sort((a, b) => a.shard - b.shard);
  }

  async publish(job: Job, records: BodyRecord[], idSuffix = ""): Promise<void> {
    for (const r of records) {
      const h = natsHeaders();
      h.set("Lab-Shard", String(job.shard));
      h.set("Lab-Shards", String(job.shards));
      h.set("Lab-First", String(job.first));
      h.set("Lab-Worker", "fake");
      await this.lab.js.publish(recordsSubject(job.run), encodeRecord(r), {
        msgID: `${job.run}.${job.shard}.${r.seq}${idSuffix}`,
        headers: h,
      });
    }
  }

  async publishMarker(job: Job, step: number, attempt: number): Promise<void> {
    const h = natsHeaders();
    h.set("Lab-Shard", String(job.shard));
    h.set("Lab-Marker", "resumed");
    const r = { type: "event", seq: 0, time: Date.now(), event: { type: "resumed", step } };
    await this.lab.js.publish(recordsSubject(job.run), encodeRecord(r), {
      msgID: `${job.run}.${job.shard}.resumed.${attempt}`,
      headers: h,
    });
  }

  close(): Promise<void> {
    return this.lab.close();
  }
}

/** The records a run must hold: the one-box run's snapshots, events and frames, in order. */
function comparable(records: BodyRecord[]) {
  const body = records.filter((r) =>
    r.type !== "status" && !(r.type === "event" && r.event.type === "resumed")
  );
  return {
    snapshots: body.flatMap((r) =>
      r.type === "snapshot"
        ? [{ step: r.step, metrics: Object.entries(r.metrics).map(([k, v]) => [k, [...v]]) }]
        : []
    ),
    frames: body.flatMap((r) =>
      r.type === "frame" ? [{ step: r.step, name: r.name, values: [...r.values] }] : []
    ),
    events: body.flatMap((r) => r.type === "event" ? [JSON.stringify(r.event)] : []).sort(),
    order: body.map((r) =>
      `${r.type}@${r.type === "event" ? r.event.step : "step" in r ? r.step : ""}`
    ),
  };
}

function assertSameRun(merged: BodyRecord[], oneBox: BodyRecord[]): void {
  const seqs = merged.map((r) => r.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "the merged run's seqs are 1..n, each once");
  const a = comparable(merged);
  const b = comparable(oneBox);
  assert.deepEqual(a.snapshots, b.snapshots);
  assert.deepEqual(a.frames, b.frames);
  assert.deepEqual(a.events, b.events);
  assert.deepEqual(
    a.order.filter((o) => !o.startsWith("event")),
    b.order.filter((o) => !o.startsWith("event")),
  );
  const statuses = merged.flatMap((r) => r.type === "status" ? [r.status] : []);
  assert.deepEqual(statuses, ["queued", "running", "finished"]);
}

let oneBoxCache: BodyRecord[] | undefined;
async function oneBox(): Promise<BodyRecord[]> {
  oneBoxCache ??= await oneBoxRun();
  return oneBoxCache;
}

async function startCoordinatorLab(
  nats: NatsServer | { url: string },
  shardReplicas?: number,
  dataDir?: string,
  connected = true,
  lines: string[] = [],
): Promise<{ lab: TestLab; coordinator: Coordinator; close(): Promise<void> }> {
  const coordinator = new Coordinator({
    nats: { url: nats.url },
    shardReplicas,
    retryMs: 200,
    log: (line) => lines.push(line),
  });
  const lab = await startTestLab({
    executor: coordinator,
    cluster: coordinator,
    ...(dataDir ? { dataDir } : {}),
  });
  coordinator.start();
  if (connected) await waitFor(() => coordinator.connected, "the coordinator to connect to NATS");
  return {
    lab,
    coordinator,
    async close() {
      await lab.close();
      await coordinator.close();
    },
  };
}

Deno.test("planFor: --shard-replicas blocks, else one block per unit of live worker capacity", () => {
  assert.deepEqual(planFor(6, 2, 0), [{ first: 0, count: 2 }, { first: 2, count: 2 }, {
    first: 4,
    count: 2,
  }]);
  assert.deepEqual(planFor(7, undefined, 3).map((s) => s.count), [3, 3, 1]);
  assert.deepEqual(planFor(6, undefined, 0), [{ first: 0, count: 6 }]);
  assert.deepEqual(planFor(2, undefined, 8).map((s) => s.count), [1, 1]);
});

Deno.test("a sharded run merged from shuffled, repeated shard records equals the one-box run", async () => {
  const expected = await oneBox();
  const nats = await startNats();
  const c = await startCoordinatorLab(nats, 2);
  const worker = await FakeWorker.connect(nats.url);
  try {
    const id = await submit(c.lab.url, SPEC);
    const jobs = await worker.takeJobs(3);
    assert.deepEqual(jobs.map((j) => [j.first, j.count, j.spec.replicas]), [[0, 2, 2], [2, 2, 2], [
      4,
      2,
      2,
    ]]);
    const shards = jobs.map((j) => shardRecords(expected, j.first, j.count));
    // The last shard first, then the others interleaved; every record twice (a redelivery
    // that escaped the stream's duplicate window: a different message id).
    await worker.publish(jobs[2], shards[2]);
    for (let i = 0; i < Math.max(shards[0].length, shards[1].length); i++) {
      await worker.publish(jobs[1], shards[1].slice(i, i + 1));
      await worker.publish(jobs[0], shards[0].slice(i, i + 1));
      await worker.publish(jobs[0], shards[0].slice(i, i + 1), ".again");
    }
    await worker.publish(jobs[2], shards[2], ".again");
    await worker.publishMarker(jobs[1], 300, 2);
    await worker.publishMarker(jobs[1], 300, 2); // the same marker again: one event
    await waitFor(() => c.lab.manager.status(id) === "finished", "the sharded run to finish");
    const merged = await c.lab.manager.allRecords(id);
    assertSameRun(merged, expected);
    const resumed = merged.filter((r) => r.type === "event" && r.event.type === "resumed");
    assert.deepEqual(resumed.length, 1);
    const csv = await (await fetch(`${c.lab.url}/api/runs/${id}/metrics.csv`)).text();
    assert(csv.split("\n").length > 20, "the CSV has the run's rows");
  } finally {
    await worker.close();
    await c.close();
    await nats.close();
  }
});

Deno.test("a coordinator killed (SIGKILL) or stopped (SIGTERM) mid-run and restarted loses nothing and stores nothing twice", async () => {
  const expected = await oneBox();
  const nats = await startNats();
  const dataDir = await Deno.makeTempDir({ prefix: "lab-coord-" });
  const worker = await FakeWorker.connect(nats.url);
  const args = [`--nats=${nats.url}`, "--shard-replicas=3"];
  const startCoordinator = async () => {
    const server = await startServerProcess(dataDir, args);
    await waitFor(async () => {
      const health = await (await fetch(`${server.url}/api/health`)).json();
      return health.nats?.connected;
    }, "the coordinator process to connect to NATS");
    return server;
  };
  let server = await startCoordinator();
  try {
    const id = await submit(server.url, SPEC);
    const jobs = await worker.takeJobs(2);
    const shards = jobs.map((j) => shardRecords(expected, j.first, j.count));
    // Shard 0 runs ahead: the merge holds records of it that are not in the log yet.
    await worker.publish(jobs[0], shards[0].slice(0, 30));
    await worker.publish(jobs[1], shards[1].slice(0, 12));
    const lastSeq = async () =>
      (await (await fetch(`${server.url}/api/runs/${id}`)).json()).last_seq as number;
    await waitFor(async () => (await lastSeq()) >= 10, "merged records in the log");
    server.child.kill("SIGKILL");
    await server.child.status;
    // While it is down: more records, some of them repeats.
    await worker.publish(jobs[1], shards[1].slice(8, 20), ".again");
    server = await startCoordinator();
    await worker.publish(jobs[0], shards[0].slice(30, 40));
    await worker.publish(jobs[1], shards[1].slice(20, 30));
    // A graceful stop (SIGTERM) mid-run too: the run is not marked, it is taken up again.
    await waitFor(async () => (await lastSeq()) >= 25, "more merged records");
    server.child.kill("SIGTERM");
    await server.child.status;
    server = await startCoordinator();
    await worker.publish(jobs[0], shards[0].slice(40));
    await worker.publish(jobs[1], shards[1].slice(30));
    await waitFor(async () => {
      const r = await (await fetch(`${server.url}/api/runs/${id}`)).json();
      return r.status === "finished";
    }, "the run to finish after the restart");
    server.child.kill("SIGTERM");
    await server.child.status;
    // Read the log back through a plain lab (the one reader path).
    const reader = await startTestLab({ dataDir });
    try {
      assertSameRun(await reader.manager.allRecords(id), expected);
    } finally {
      await reader.shutdown();
    }
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* ended */ }
    await server.child.status;
    await worker.close();
    await nats.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("NATS down: stored runs are still served, submits answer 503, a run in flight goes on when NATS is back", async () => {
  const expected = await oneBox();
  const nats = await startNats();
  const c = await startCoordinatorLab(nats);
  let worker = await FakeWorker.connect(nats.url);
  try {
    const id = await submit(c.lab.url, SPEC);
    const [job] = await worker.takeJobs(1);
    assert.deepEqual([job.first, job.count], [0, 6], "no live worker: one shard");
    await worker.publish(job, shardRecords(expected, 0, 6));
    await waitFor(() => c.lab.manager.status(id) === "finished", "the run to finish");
    // A second run in flight when NATS goes: it waits, and goes on when NATS is back.
    const inFlight = await submit(c.lab.url, SPEC);
    const [job2] = (await worker.takeJobs(2)).filter((j) => j.run === inFlight);
    const records = shardRecords(expected, 0, 6);
    await worker.publish(job2, records.slice(0, 20));
    await waitFor(() => c.lab.manager.lastSeq(inFlight) >= 10, "the second run's first records");
    await worker.close();
    await nats.kill();
    await waitFor(() => !c.coordinator.connected, "the coordinator to notice NATS is down");
    const health = await (await fetch(`${c.lab.url}/api/health`)).json();
    assert.deepEqual(health.nats.connected, false);
    const runs = await (await fetch(`${c.lab.url}/api/runs`)).json();
    assert.deepEqual(runs.map((r: { id: string }) => r.id), [id, inFlight]);
    const csv = await fetch(`${c.lab.url}/api/runs/${id}/metrics.csv`);
    assert.deepEqual(csv.status, 200);
    await csv.text();
    const refused = await fetch(`${c.lab.url}/api/runs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(SPEC),
    });
    assert.deepEqual(refused.status, 503);
    const body = await refused.json();
    assert(/NATS/.test(body.error) && /stored runs are still served/.test(body.error), body.error);
    await nats.restart();
    await waitFor(() => c.coordinator.connected, "the coordinator to reconnect");
    worker = await FakeWorker.connect(nats.url);
    await worker.publish(job2, records.slice(10));
    await waitFor(() => c.lab.manager.status(inFlight) === "finished", "the run in flight to end");
    assertSameRun(await c.lab.manager.allRecords(inFlight), expected);
    const again = await submit(c.lab.url, SPEC);
    assert(c.lab.manager.has(again));
    const workers = await fetch(`${c.lab.url}/api/workers`);
    assert.deepEqual(workers.status, 200);
    assert.deepEqual(await workers.json(), []);
  } finally {
    await worker.close().catch(() => {});
    await c.close();
    await nats.close();
  }
});

Deno.test("stopping a sharded run cancels its jobs: outcomes written, cancel published, later records ignored", async () => {
  const expected = await oneBox();
  const nats = await startNats();
  const c = await startCoordinatorLab(nats, 3);
  const worker = await FakeWorker.connect(nats.url);
  try {
    const id = await submit(c.lab.url, SPEC);
    const jobs = await worker.takeJobs(2);
    const cancels: string[] = [];
    const sub = worker.lab.nc.subscribe(`lab.runs.${id}.cancel`, {
      callback: (_e, m) => {
        cancels.push(m.string());
      },
    });
    await worker.lab.nc.flush();
    const shards = jobs.map((j) => shardRecords(expected, j.first, j.count));
    await worker.publish(jobs[0], shards[0].slice(0, 10));
    await worker.publish(jobs[1], shards[1].slice(0, 10));
    await waitFor(() => c.lab.manager.lastSeq(id) >= 5, "merged records");
    const res = await fetch(`${c.lab.url}/api/runs/${id}/stop`, { method: "POST" });
    assert.equal(res.status, 200);
    await res.json();
    await waitFor(() => c.lab.manager.status(id) === "stopped", "the run to stop");
    await waitFor(() => cancels.length > 0, "the cancel message");
    for (const j of jobs) {
      const outcome = await worker.lab.outcomes.get(`${id}.${j.shard}`);
      assert.equal(outcome?.json<{ status: string }>().status, "stopped");
    }
    const seq = c.lab.manager.lastSeq(id);
    await worker.publish(jobs[0], shards[0].slice(10));
    await worker.publish(jobs[1], shards[1].slice(10));
    await new Promise((r) => setTimeout(r, 300)); // nothing may arrive: give it the chance
    assert.equal(c.lab.manager.lastSeq(id), seq, "records after the stop are not stored");
    sub.unsubscribe();
  } finally {
    await worker.close();
    await c.close();
    await nats.close();
  }
});

Deno.test("NATS unreachable at start: one line, health says so, submits 503, connects when it comes", async () => {
  const port = freePort();
  const lines: string[] = [];
  const c = await startCoordinatorLab(
    { url: `nats://127.0.0.1:${port}` },
    undefined,
    undefined,
    false,
    lines,
  );
  let nats: NatsServer | undefined;
  try {
    await waitFor(() => lines.length > 0, "the coordinator's notice");
    const health = await (await fetch(`${c.lab.url}/api/health`)).json();
    assert.equal(health.nats.connected, false);
    assert.match(health.nats.error, /not reachable|refused/);
    const refused = await fetch(`${c.lab.url}/api/runs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(SPEC),
    });
    assert.equal(refused.status, 503);
    await refused.json();
    nats = await startNats(port);
    await waitFor(() => c.coordinator.connected, "the coordinator to connect once NATS is up");
    assert.equal(lines.filter((l) => /not reachable/.test(l)).length, 1, lines.join("\n"));
  } finally {
    await c.close();
    await nats?.close();
  }
});

Deno.test("--local-compute: the coordinator computes its runs itself through NATS, with no other worker", async () => {
  const nats = await startNats();
  const dataDir = await Deno.makeTempDir({ prefix: "lab-coord-" });
  const server = await startServerProcess(dataDir, [`--nats=${nats.url}`, "--local-compute"]);
  try {
    await waitFor(async () => {
      const res = await fetch(`${server.url}/api/workers`);
      const list = res.ok ? await res.json() : (await res.body?.cancel(), []);
      return list.length === 1 && list;
    }, "the coordinator's own worker listed");
    const id = await submit(server.url, { ...SPEC, steps: 200 });
    await waitFor(async () => {
      const r = await (await fetch(`${server.url}/api/runs/${id}`)).json();
      return r.status === "finished";
    }, "the run to finish on the local worker");
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    await nats.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("the jobs consumer's ack wait changes only where --job-ack-wait is given (a later side without it keeps it)", async () => {
  const nats = await startNats();
  try {
    const first = await connectLab({ url: nats.url }, { jobAckWaitMs: 3000 });
    await first.close();
    const second = await connectLab({ url: nats.url }); // e.g. a coordinator without the flag
    try {
      const info = await second.jsm.consumers.info(JOBS_STREAM, JOBS_CONSUMER);
      assert.equal(info.config.ack_wait, 3000 * 1_000_000);
    } finally {
      await second.close();
    }
  } finally {
    await nats.close();
  }
});
