/**
 * The shard merge (server/cluster/merge.ts) is a function of the shards' sequences alone: any
 * arrival order, with repeats, gives the same merged records. That is what lets a restarted
 * coordinator replay a run's records and drop exactly what its log holds.
 */
import assert from "node:assert/strict";
import { ShardMerger } from "../server/cluster/merge.ts";
import type { BodyRecord } from "../server/runs/records.ts";
import type { Unsequenced } from "../server/runs/recorder.ts";

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
