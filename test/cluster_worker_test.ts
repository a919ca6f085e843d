/**
 * The worker of the multi-box mode (`deno task worker`, server/cluster/worker.ts) against a
 * real nats-server with JetStream: jobs published here as a coordinator would, records read
 * back from the subject as an outside subscriber would, and compared value for value (only
 * the wall-clock fields `time` and `wall_ms` ignored; `seq` included) with the same spec run
 * locally through driveRun. Then the failure cases: a worker SIGKILLed after a checkpoint (the
 * job is redelivered after its ack wait and continues from the checkpoint elsewhere), and a
 * worker stopped with SIGTERM (it hands the job back at once, long before the ack wait).
 */
import assert from "node:assert/strict";
import { ROOT, waitFor } from "./lab_harness.ts";
import {
  freePort,
  hasEnded,
  NATS_MISSING,
  type NatsServer,
  natsServerInstalled,
  type PublishedRecord,
  readRecords,
  startNatsServer,
  startWorkerProcess,
  type WorkerProcess,
} from "./nats_test_server.ts";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type { RunSpec, SessionState } from "../server/experiments/types.ts";
import { openWorkerSession } from "../server/engine/worker_session.ts";
import { driveRun } from "../server/runs/driver.ts";
import { RunRecorder } from "../server/runs/recorder.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { type BodyRecord, expandSnapshots } from "../server/runs/records.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../server/runs/checkpoints.ts";
import { connectLab, JOBS_STREAM, JOBS_SUBJECT, type LabNats } from "../server/cluster/nats.ts";
import type { JobOutcome, WorkerAnnouncement } from "../server/cluster/worker.ts";

const installed = natsServerInstalled();
if (!installed) console.error(`cluster_worker_test skipped: ${NATS_MISSING}`);

/** A short run: 50 snapshots and frames, a planned lr change halfway. */
const SHORT = validateRunSpec({
  experiment: "shape-matters",
  replicas: 2,
  steps: 100_000,
  every: 2_000,
  backend: "wasm",
  params: { d: 30, n: 12, lr: [0.01, 0.02], lr_schedule: [[50_000, 0.5]] },
});
/** A run of a few seconds, long enough to be killed after its first checkpoint. */
const LONG = validateRunSpec({
  experiment: "shape-matters",
  replicas: 2,
  steps: 400_000,
  every: 10_000,
  backend: "wasm",
  params: { lr: [0.01, 0.02], lr_schedule: [[200_000, 0.5]] },
});

/** The records of `spec` run on this machine, uninterrupted, through the same driver. */
async function localRecords(spec: RunSpec): Promise<BodyRecord[]> {
  const session = await openWorkerSession(spec);
  const recorder = new RunRecorder(newRunHeader("local", spec, session.backend, session.adapter));
  const out: BodyRecord[] = [];
  recorder.listen((rs) => out.push(...expandSnapshots(rs)));
  try {
    const result = await driveRun(session, spec, recorder);
    assert.equal(result.status, "finished");
  } finally {
    await session.dispose();
  }
  return out;
}

/** Without the wall-clock fields, which differ between any two runs. */
function values(records: BodyRecord[]): unknown[] {
  return records.map((r) => {
    const { time: _t, ...rest } = r as BodyRecord & { wall_ms?: number };
    delete (rest as { wall_ms?: number }).wall_ms;
    return rest;
  });
}

/** The deterministic sequence: markers (seq 0) left out, the first copy of each seq kept. */
function bySeq(published: PublishedRecord[]): BodyRecord[] {
  const seen = new Map<number, BodyRecord>();
  for (const { record } of published) {
    if (record.seq > 0 && !seen.has(record.seq)) seen.set(record.seq, record);
  }
  return [...seen.values()].sort((a, b) => a.seq - b.seq);
}

let jobCounter = 0;
/** Each job's message in LAB_JOBS, by run. */
const jobMessages = new Map<string, number>();
async function publishJob(lab: LabNats, spec: unknown, count = 2): Promise<string> {
  const run = `t${Date.now().toString(36)}${jobCounter++}`;
  const job = { v: 1, run, shard: 0, shards: 1, first: 0, count, spec, checkpointIntervalMs: 0 };
  const ack = await lab.js.publish(JOBS_SUBJECT, JSON.stringify(job), { msgID: `job.${run}.0` });
  jobMessages.set(run, ack.seq);
  return run;
}

/**
 * Waits until the run's job is acked: the work queue then drops its message. (The outcome is
 * written just before the ack, so a step that ends on the outcome could leave the job in
 * flight to the next step, its worker killed before the ack went out.)
 */
async function jobAcked(lab: LabNats, run: string): Promise<void> {
  const seq = jobMessages.get(run)!;
  await waitFor(async () => {
    try {
      return (await lab.jsm.streams.getMessage(JOBS_STREAM, { seq })) === null;
    } catch {
      return true; // no message with that seq: acked and removed
    }
  }, `the job of ${run} acked`);
}

async function outcomeOf(lab: LabNats, key: string): Promise<JobOutcome> {
  const entry = await waitFor(async () => {
    const e = await lab.outcomes.get(key);
    return e && e.operation === "PUT" ? e : undefined;
  }, `outcome of ${key}`);
  return entry.json<JobOutcome>();
}

/** Whether the job's checkpoint object exists (a deleted object's info says `deleted`). */
async function hasCheckpoint(lab: LabNats, key: string): Promise<boolean> {
  const info = await lab.checkpoints.info(key);
  return info !== null && !info.deleted;
}

/** Writes to lab_jobs so far (every outcome ever created, all keys). */
async function outcomeWrites(lab: LabNats): Promise<number> {
  return (await lab.jsm.streams.info("KV_lab_jobs")).state.last_seq;
}

const WORKER_FLAGS = ["--backend=wasm", "--checkpoint-interval=0.2"];

Deno.test({
  name: "a worker started before NATS says so once, waits, pulls jobs; Ctrl-C stops it gracefully",
  ignore: !installed,
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const port = freePort();
  const url = `nats://127.0.0.1:${port}`;
  const w = startWorkerProcess(url, ["--backend=wasm", "--capacity=1"]);
  let nats: NatsServer | undefined;
  try {
    await w.waitForLine(/NATS is not reachable at .* retrying every 2 s/);
    nats = await startNatsServer(port);
    await w.waitForLine(/pulling jobs/);
    assert.ok(w.lines.some((l) => /connected to NATS at/.test(l)), w.lines.join("\n"));
    assert.equal(w.lines.filter((l) => /not reachable/.test(l)).length, 1, "said once");
    assert.ok(!w.lines.some((l) => /^\s+at /.test(l)), "no stack trace");
    // Ctrl-C through `deno task`: the terminal signals the whole process group and the task
    // forwards its own copy a moment later. One graceful stop (an idle worker's lasts until its
    // pull expires, up to 3 s), not a forced exit.
    w.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 100));
    w.kill("SIGINT");
    assert.equal((await w.status).code, 0, w.lines.join("\n"));
  } finally {
    w.kill("SIGKILL");
    await w.status;
    await nats?.stop();
  }
});

Deno.test({
  name: "a worker runs NATS jobs, and hands them on exactly when it dies or stops",
  ignore: !installed,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await ensureWasm();
  const nats = await startNatsServer();
  const lab = await connectLab({ url: nats.url });
  const workers: WorkerProcess[] = [];
  const start = async (flags: string[], capacity = 1) => {
    const w = startWorkerProcess(nats.url, [...flags, `--capacity=${capacity}`]);
    workers.push(w);
    await w.waitForLine(/pulling jobs/);
    return w;
  };
  /** Ends every worker a step started, so that none takes the next step's job. */
  const stopAll = async () => {
    for (const w of workers) w.kill("SIGKILL");
    await Promise.all(workers.splice(0).map((w) => w.status));
  };
  const step = (name: string, fn: () => Promise<void>) =>
    t.step(name, async () => {
      try {
        await fn();
      } finally {
        await stopAll();
      }
    });
  let longLocal: Promise<BodyRecord[]> | undefined;
  try {
    let shortRun = "";
    // One worker for this step and the next two (each worker process costs seconds to start).
    let steady: WorkerProcess | undefined;
    let shortLocal: Promise<BodyRecord[]> | undefined;
    await t.step("its records on the subject equal a local run's, value for value", async () => {
      steady = await start([...WORKER_FLAGS, "--job-ack-wait=30"]);
      const local = shortLocal = localRecords(SHORT);
      shortRun = await publishJob(lab, SHORT);
      const published = await readRecords(lab, shortRun, hasEnded);
      assert.deepEqual(values(bySeq(published)), values(await local));
      assert.ok(published.every((p) => p.record.seq > 0), "no markers in a first delivery");
      const h = published[0].headers;
      assert.deepEqual(
        [h["Lab-Shard"], h["Lab-Shards"], h["Lab-First"]],
        ["0", "1", "0"],
      );
      const outcome = await outcomeOf(lab, `${shortRun}.0`);
      assert.equal(outcome.status, "finished");
      assert.equal(outcome.worker, h["Lab-Worker"]);
      assert.equal(outcome.seq, published.at(-1)!.record.seq);
      const announced = (await lab.workers.get(h["Lab-Worker"]))!.json<WorkerAnnouncement>();
      assert.equal(announced.backend, "wasm");
      assert.equal(announced.capacity, 1);
    });

    await t.step("an outside subscriber (examples/nats_subscriber.ts) prints them", async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}examples/nats_subscriber.ts`, nats.url, shortRun],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const snapshots = text.split("\n").filter((l) => / step \d+ train_loss\[0\]=/.test(l));
      assert.equal(snapshots.length, SHORT.steps / SHORT.every + 1);
      assert.match(text, new RegExp(`${shortRun} shard 0 finished at step ${SHORT.steps}`));
    });

    await t.step("a checkpoint the job cannot continue from is ignored", async () => {
      const w = steady ?? await start([...WORKER_FLAGS, "--job-ack-wait=30"]);
      // A job whose key already has an object that decodes but is no session state of it.
      const run = `t${Date.now().toString(36)}${jobCounter++}x`;
      const bogus = await encodeCheckpoint({
        format: "lab-checkpoint",
        version: 1,
        run: `${run}.0`,
        seq: 7,
        step: 6_000,
        diverged: [],
        written: new Date().toISOString(),
        state: { format: "not-a-state", version: 1 } as unknown as SessionState,
      });
      await lab.checkpoints.putBlob({ name: `${run}.0` }, bogus);
      const job = { v: 1, run, shard: 0, shards: 1, first: 0, count: 2, spec: SHORT };
      const ack = await lab.js.publish(JOBS_SUBJECT, JSON.stringify(job), {
        msgID: `job.${run}.0`,
      });
      jobMessages.set(run, ack.seq);
      const published = await readRecords(lab, run, hasEnded);
      assert.deepEqual(values(bySeq(published)), values(await shortLocal!));
      await w.waitForLine(new RegExp(`job ${run}\\.0: ignoring its checkpoint`));
      assert.equal((await outcomeOf(lab, `${run}.0`)).status, "finished");
    });

    await step("a job with a bad spec ends failed once, not redelivered", async () => {
      const w = steady ?? await start([...WORKER_FLAGS, "--job-ack-wait=30"]);
      const run = await publishJob(lab, { ...SHORT, params: { ...SHORT.params, d: -3 } });
      const published = await readRecords(lab, run, hasEnded);
      assert.equal(published.length, 1);
      const r = published[0].record;
      assert.ok(r.type === "status" && r.status === "failed" && r.seq === 1);
      assert.match(r.error ?? "", /invalid job spec: params\.d/);
      const outcome = await outcomeOf(lab, `${run}.0`);
      assert.equal(outcome.status, "failed");
      w.kill("SIGTERM");
      assert.equal((await w.status).code, 0);
    });

    longLocal = localRecords(LONG);
    longLocal.catch(() => {});

    await step("SIGKILLed after a checkpoint: redelivered, resumed, same records", async () => {
      const w1 = await start([...WORKER_FLAGS, "--job-ack-wait=3"]);
      const writesBefore = await outcomeWrites(lab);
      const run = await publishJob(lab, LONG);
      const key = `${run}.0`;
      const ckptStep = await waitFor(async () => {
        const bytes = await lab.checkpoints.getBlob(key).catch(() => null);
        if (!bytes) return undefined;
        const d = await decodeCheckpoint(bytes);
        return "checkpoint" in d && d.checkpoint.step > 0 ? d.checkpoint.step : undefined;
      }, "a first checkpoint");
      w1.kill("SIGKILL");
      await w1.status;
      assert.equal(await lab.outcomes.get(key), null, "killed before the end");
      const w1Id = (await readRecords(lab, run, (rs) => rs.length > 0))[0].headers["Lab-Worker"];
      await start([...WORKER_FLAGS, "--job-ack-wait=3"]);
      const published = await readRecords(lab, run, hasEnded);
      const markers = published.filter((p) => p.record.seq === 0);
      assert.equal(markers.length, 1, "one resumed marker");
      assert.equal(markers[0].headers["Lab-Marker"], "resumed");
      const m = markers[0].record;
      assert.ok(m.type === "event" && m.event.type === "resumed");
      const from = m.event.step;
      assert.ok(from >= ckptStep, `continued from a checkpoint (step ${from} ≥ ${ckptStep})`);
      assert.match(m.event.detail ?? "", /continued from the checkpoint/);
      const after = published.filter((p) => p.record.seq > 0 && p.headers["Lab-Worker"] !== w1Id);
      assert.ok(after.length > 0, "the second worker published the rest");
      assert.deepEqual(values(bySeq(published)), values(await longLocal!));
      const outcome = await outcomeOf(lab, key);
      assert.equal(outcome.status, "finished");
      assert.notEqual(outcome.worker, w1Id);
      assert.equal(await outcomeWrites(lab), writesBefore + 1, "the outcome is written once");
      await waitFor(async () => !(await hasCheckpoint(lab, key)), "checkpoint deleted");
      await jobAcked(lab, run);
    });

    await step("SIGTERM hands the job back at once; the next worker resumes it", async () => {
      // An ack wait far beyond this step's waits: only a hand-back can move the job on.
      const flags = [...WORKER_FLAGS, "--job-ack-wait=600"];
      // With an idle slot, whose pull may receive the job handed back before the worker exits.
      const w1 = await start(flags, 2);
      const run = await publishJob(lab, LONG);
      const key = `${run}.0`;
      await waitFor(() => hasCheckpoint(lab, key), "a first checkpoint");
      w1.kill("SIGTERM");
      const status = await w1.status;
      assert.equal(status.code, 0, w1.lines.join("\n"));
      assert.ok(w1.lines.some((l) => /handed back at step \d+/.test(l)), w1.lines.join("\n"));
      const w1Id = w1.lines.find((l) => /pulling jobs/.test(l))!.split(" ")[2];
      const entry = await lab.workers.get(w1Id);
      assert.ok(!entry || entry.operation !== "PUT", "announcement deleted");
      await start(flags);
      const published = await readRecords(lab, run, hasEnded, 60_000);
      const markers = published.filter((p) => p.record.seq === 0);
      assert.equal(markers.length, 1);
      assert.deepEqual(values(bySeq(published)), values(await longLocal!));
      assert.equal((await outcomeOf(lab, key)).status, "finished");
      await jobAcked(lab, run);
    });

    await step(
      "with --threads=2 a job's replicas are split across workers, numbers unchanged",
      async () => {
        const w = await start([...WORKER_FLAGS, "--threads=2", "--job-ack-wait=30"]);
        const four = validateRunSpec({ ...SHORT, replicas: 4, params: { d: 30, n: 12 } });
        const local = localRecords(four);
        const run = await publishJob(lab, four, 4);
        const published = await readRecords(lab, run, hasEnded);
        assert.deepEqual(values(bySeq(published)), values(await local));
        assert.match(w.lines.join("\n"), /2 threads per job/, "the worker says it splits jobs");
        await jobAcked(lab, run);
      },
    );

    await step("a coordinator's cancel stops the job and acks it", async () => {
      await start([...WORKER_FLAGS, "--job-ack-wait=600"]);
      const run = await publishJob(lab, LONG);
      const key = `${run}.0`;
      await readRecords(lab, run, (rs) => rs.some((r) => r.record.type === "snapshot"));
      // As the coordinator cancels (NATS_CONTRACT: outcome first, then the core message).
      await lab.outcomes.create(key, JSON.stringify({ worker: "coordinator", status: "stopped" }));
      lab.nc.publish(`lab.runs.${run}.cancel`, JSON.stringify({ run, time: Date.now() }));
      const published = await readRecords(lab, run, hasEnded);
      const last = published.at(-1)!.record;
      assert.ok(last.type === "status" && last.status === "stopped", JSON.stringify(last));
      assert.ok(last.step < LONG.steps);
      await jobAcked(lab, run);
      await waitFor(async () => !(await hasCheckpoint(lab, key)), "checkpoint deleted");
      assert.equal((await lab.outcomes.get(key))!.json<JobOutcome>().worker, "coordinator");
    });
  } finally {
    await stopAll();
    await lab.close();
    await nats.stop();
  }
});
