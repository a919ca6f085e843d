/**
 * The shard merge (server/cluster/merge.ts) is a function of the shards' sequences alone: any
 * arrival order, with repeats, gives the same merged records. That is what lets a restarted
 * coordinator replay a run's records and drop exactly what its log holds. And the merged
 * records of real runs' shards equal the one-box run's, events in the same order.
 */
import assert from "node:assert/strict";
import { ShardMerger } from "../server/cluster/merge.ts";
import { type BodyRecord, expandSnapshots } from "../server/runs/records.ts";
import { RunRecorder, type Unsequenced } from "../server/runs/recorder.ts";
import type { RunSpec } from "../server/experiments/types.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { planShards, shardSpec } from "../server/experiments/shard.ts";
import { openSession } from "../server/engine/open.ts";
import { driveRun } from "../server/runs/driver.ts";
import { newRunHeader } from "../server/runs/header.ts";

const PLAN = [{ first: 0, count: 2 }, { first: 2, count: 1 }, { first: 3, count: 2 }];

/** One shard's sequence: running, snapshots every 10 steps, an LR change, a frame, finished. */
function shard(index: number, count: number): BodyRecord[] {
  const out: Unsequenced<BodyRecord>[] = [{
    type: "status",
    time: 0,
    status: "running",
    step: 0,
  }];
  for (let step = 0; step <= 50; step += 10) {
    if (step === 30) {
      out.push({
        type: "event",
        time: 0,
        event: { type: "lr_change", step, factor: 0.5, lr_scale: 0.5 },
      });
    }
    if (step === 20 && index === 1) {
      out.push({ type: "event", time: 0, event: { type: "replica_diverged", step, replica: 0 } });
    }
    out.push({
      type: "snapshot",
      step,
      wall_ms: step,
      time: 0,
      metrics: { loss: Float32Array.from({ length: count }, (_, k) => index * 100 + k + step) },
    });
    if (step === 40) {
      out.push({
        type: "frame",
        step,
        time: 0,
        name: "v",
        width: 2,
        values: new Float32Array(2 * count).fill(index),
      });
    }
  }
  out.push({ type: "status", time: 0, status: "finished", step: 50 });
  return out.map((r, i) => ({ ...r, seq: i + 1 }) as BodyRecord);
}

/** A small deterministic generator, so a failure names the order that caused it. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

function merge(arrivals: [number, BodyRecord][]) {
  const m = new ShardMerger(PLAN);
  const out = [];
  for (const [i, r] of arrivals) {
    m.add(i, r);
    out.push(...m.drain());
  }
  return { out, outcome: m.outcome };
}

Deno.test("the merge of shard sequences is the same for any arrival order, with repeats", () => {
  const shards = PLAN.map((p, i) => shard(i, p.count));
  const inOrder = merge(shards.flatMap((s, i) => s.map((r) => [i, r] as [number, BodyRecord])));
  assert.deepEqual(inOrder.outcome, { status: "finished" });
  const snaps = inOrder.out.filter((r) => r.type === "snapshot");
  assert.equal(snaps.length, 6);
  assert.deepEqual([...snaps[1].metrics.loss], [10, 11, 110, 210, 211]);
  const events = inOrder.out.filter((r) => r.type === "event").map((r) => r.event);
  assert.deepEqual(events, [
    { type: "replica_diverged", step: 20, replica: 2 },
    { type: "lr_change", step: 30, factor: 0.5, lr_scale: 0.5 },
  ]);
  const frame = inOrder.out.find((r) => r.type === "frame");
  assert.deepEqual(frame && [...frame.values], [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]);
  for (let seed = 1; seed <= 50; seed++) {
    const random = rng(seed);
    const arrivals = shards.flatMap((s, i) => s.map((r) => [i, r] as [number, BodyRecord]));
    // Every record once more (a redelivery), then a shuffle.
    arrivals.push(...arrivals.filter(() => random() < 0.3));
    for (let i = arrivals.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [arrivals[i], arrivals[j]] = [arrivals[j], arrivals[i]];
    }
    assert.deepEqual(merge(arrivals), inOrder, `arrival order of seed ${seed}`);
  }
});

Deno.test("a failed shard ends the merge failed, naming the shard and its replicas", () => {
  const shards = PLAN.map((p, i) => shard(i, p.count));
  shards[1] = [...shards[1].slice(0, 3), {
    type: "status",
    seq: 4,
    time: 0,
    status: "failed",
    step: 10,
    error: "kernel lost",
  }];
  const { outcome } = merge(shards.flatMap((s, i) => s.map((r) => [i, r] as [number, BodyRecord])));
  assert.deepEqual(outcome, {
    status: "failed",
    error: "shard 1 (replica 2) failed: kernel lost",
  });
});

/** Real runs: what driveRun records for a spec, statuses and host times left out. */
async function driven(spec: RunSpec, shard = false): Promise<BodyRecord[]> {
  const session = await openSession(spec);
  const recorder = new RunRecorder(newRunHeader("t", spec, session.backend, session.adapter));
  const records: BodyRecord[] = [];
  recorder.listen((rs) => records.push(...expandSnapshots(rs)));
  try {
    await driveRun(session, spec, recorder, { chunkMs: 1, shard });
  } finally {
    await session.dispose();
  }
  return records;
}

const numbersOf = (records: Unsequenced<BodyRecord>[]) =>
  records.filter((r) => r.type !== "status").map((r) => {
    const { time: _t, seq: _s, wall_ms: _w, ...rest } = r as BodyRecord & { wall_ms?: number };
    return rest;
  });

for (
  const spec of [
    // A planned learning-rate change off the snapshot grid, after replica 4 diverged (step 6).
    validateRunSpec({
      experiment: "shape-matters",
      replicas: 6,
      steps: 60,
      every: 10,
      backend: "reference",
      params: {
        algo: "label-noise",
        d: 16,
        n: 8,
        r: 3,
        data: "per-replica",
        lr: [0.01, 0.02, 0.015, 0.005, 10, 0.012],
        lr_schedule: [[8, 0.5]],
      },
    }),
    // Frames every snapshot; divergences and lazy escapes from several shards.
    validateRunSpec({
      experiment: "linear-label-noise",
      replicas: 6,
      steps: 60,
      every: 10,
      backend: "reference",
      params: {
        algo: "label-noise-sgd",
        m: 9,
        d: 5,
        n: 11,
        n_test: 7,
        init: "per-replica",
        lr: [0.05, 0.1, 0.2, 0.08, 9, 0.15],
        sigma: 1,
        frame_every: 1,
      },
    }),
  ]
) {
  Deno.test(`${spec.experiment}: shards of a real run merge into the one-box run's records, events in its order`, async () => {
    const whole = numbersOf(await driven(spec));
    assert.ok(whole.some((r) => r.type === "event"), "the run has events");
    const plan = planShards(spec.replicas, 2);
    // As workers run them: a shard whose replicas all diverge goes on (DriveOptions.shard).
    const shards = await Promise.all(
      plan.map((s) => driven(shardSpec(spec, s.first, s.count), true)),
    );
    const merger = new ShardMerger(plan);
    const merged: Unsequenced<BodyRecord>[] = [];
    // Arrival: the last shard first, then the others, record by record in turn.
    for (const r of shards[2]) merger.add(2, r);
    merged.push(...merger.drain());
    const longest = Math.max(...shards.map((s) => s.length));
    for (let k = 0; k < longest; k++) {
      for (const i of [1, 0]) if (shards[i][k]) merger.add(i, shards[i][k]);
      merged.push(...merger.drain());
    }
    assert.equal(merger.outcome?.status, "finished", merger.outcome?.error);
    assert.deepStrictEqual(numbersOf(merged), whole);
  });
}

Deno.test("a merged run fails once every replica of every shard diverged, as on one box", () => {
  const plan = [{ first: 0, count: 1 }, { first: 1, count: 1 }];
  const merger = new ShardMerger(plan);
  const seqOf = [0, 0];
  const add = (i: number, r: Unsequenced<BodyRecord>) =>
    merger.add(i, { ...r, seq: ++seqOf[i] } as BodyRecord);
  const snap = (step: number) => ({
    type: "snapshot" as const,
    step,
    wall_ms: 0,
    time: 0,
    metrics: { loss: Float32Array.of(step) },
  });
  for (const i of [0, 1]) {
    add(i, { type: "status", time: 0, status: "running", step: 0 });
    add(i, snap(0));
  }
  // Shard 0's replica diverges at 5, and shard 0 goes on; shard 1's at 15.
  add(0, { type: "event", time: 0, event: { type: "replica_diverged", step: 5, replica: 0 } });
  add(0, snap(10));
  add(1, snap(10));
  merger.drain();
  assert.equal(merger.outcome?.status, undefined, "one replica of two diverged: the run goes on");
  add(0, snap(20));
  add(1, { type: "event", time: 0, event: { type: "replica_diverged", step: 15, replica: 0 } });
  add(1, snap(20));
  const last = merger.drain();
  assert.equal(merger.outcome?.status, "failed");
  assert.match(merger.outcome?.error ?? "", /all 2 replicas diverged/);
  assert.deepEqual(
    last.map((r) => r.type === "event" ? `event ${r.event.type} ${r.event.step}` : r.type),
    ["event replica_diverged 15", "snapshot"],
  );
});
