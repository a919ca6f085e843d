/** History decimation (min/max/last per bucket) and the in-memory record ring. */
import assert from "node:assert/strict";
import { decimate, type SnapshotLike } from "../server/runs/history.ts";
import { RecordRing } from "../server/runs/ring.ts";
import type { BodyRecord } from "../server/runs/records.ts";

function snaps(values: number[][], every = 10): SnapshotLike[] {
  // values[i] = per-replica values of metric "m" at step i·every
  return values.map((v, i) => ({
    step: i * every,
    wall_ms: i * 2.5,
    metrics: { m: Float32Array.from(v) },
  }));
}

Deno.test("without buckets every snapshot is its own bucket, values exact", () => {
  const s = snaps([[1, 2], [3, 4], [5, 6]]);
  const d = decimate(s, { metrics: ["m"], replicas: 2 });
  assert.equal(d.buckets, 3);
  assert.equal(d.snapshots, 3);
  assert.deepEqual([...d.steps_from], [0, 10, 20]);
  assert.deepEqual([...d.steps_to], [0, 10, 20]);
  assert.deepEqual([...d.metrics.m.min], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...d.metrics.m.max], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...d.metrics.m.last], [1, 2, 3, 4, 5, 6]);
});

Deno.test("a one-snapshot spike survives decimation as the bucket max; last is the bucket's last", () => {
  const values = Array.from({ length: 1000 }, (_, i) => [i === 537 ? 1e6 : 1, -i]);
  const d = decimate(snaps(values, 1), { metrics: ["m"], replicas: 2, buckets: 10 });
  assert.equal(d.buckets, 10);
  assert.equal(d.snapshots, 1000);
  // Bucket 5 covers steps 500..599.
  assert.equal(d.steps_from[5], 500);
  assert.equal(d.steps_to[5], 599);
  assert.equal(d.last_step[5], 599);
  assert.equal(d.wall_ms[5], 599 * 2.5, "wall time of the bucket's last snapshot");
  assert.equal(d.metrics.m.max[5 * 2 + 0], 1e6);
  assert.equal(d.metrics.m.min[5 * 2 + 0], 1);
  assert.equal(d.metrics.m.last[5 * 2 + 1], -599);
  assert.equal(d.metrics.m.min[5 * 2 + 1], -599);
  assert.equal(d.metrics.m.max[5 * 2 + 1], -500);
  for (let b = 0; b < 10; b++) if (b !== 5) assert.equal(d.metrics.m.max[b * 2], 1);
});

Deno.test("a step range selects snapshots inclusively and buckets span it evenly", () => {
  const values = Array.from({ length: 101 }, (_, i) => [i]);
  const d = decimate(snaps(values, 10), {
    metrics: ["m"],
    replicas: 1,
    fromStep: 200,
    toStep: 599,
    buckets: 4,
  });
  assert.equal(d.from_step, 200);
  assert.equal(d.to_step, 599);
  assert.equal(d.snapshots, 40);
  assert.deepEqual([...d.steps_from], [200, 300, 400, 500]);
  assert.deepEqual([...d.steps_to], [290, 390, 490, 590]);
  assert.deepEqual([...d.metrics.m.min], [20, 30, 40, 50]);
  assert.deepEqual([...d.metrics.m.max], [29, 39, 49, 59]);
});

Deno.test("empty buckets are left out; NaN (a diverged replica) is ignored by min/max", () => {
  // Snapshots only at 0..9 and 990..999 of a 0..999 range.
  const s: SnapshotLike[] = [];
  for (const step of [0, 5, 9, 990, 999]) {
    s.push({ step, metrics: { m: Float32Array.from([step === 5 ? NaN : step, NaN]) } });
  }
  const d = decimate(s, { metrics: ["m"], replicas: 2, buckets: 4 });
  assert.equal(d.buckets, 2);
  assert.deepEqual([...d.steps_from], [0, 990]);
  assert.equal(d.metrics.m.min[0], 0);
  assert.equal(d.metrics.m.max[0], 9);
  assert.ok(Number.isNaN(d.metrics.m.min[1]), "all-NaN replica stays NaN");
  assert.ok(Number.isNaN(d.metrics.m.last[1]));
});

Deno.test("more buckets than snapshots, and no snapshots, are handled", () => {
  const d = decimate(snaps([[1], [2]]), { metrics: ["m"], replicas: 1, buckets: 50 });
  assert.equal(d.buckets, 2);
  const e = decimate([], { metrics: ["m"], replicas: 1, buckets: 50 });
  assert.equal(e.buckets, 0);
  assert.equal(e.metrics.m.min.length, 0);
});

function rec(seq: number, bytes = 0): BodyRecord {
  return {
    type: "snapshot",
    seq,
    step: seq,
    wall_ms: 0,
    time: 0,
    metrics: { m: new Float32Array(bytes / 4) },
  };
}

Deno.test("the ring serves what it holds and says undefined for what it forgot", () => {
  const ring = new RecordRing(10_000);
  assert.equal(ring.after(0), undefined, "empty ring knows nothing");
  ring.push([rec(1), rec(2), rec(3)]);
  assert.deepEqual(ring.after(0)!.map((r) => r.seq), [1, 2, 3]);
  assert.deepEqual(ring.after(1, 1)!.map((r) => r.seq), [2]);
  assert.deepEqual(ring.after(3), []);
  // Each of these is ~4 KB: the ring keeps about two of them.
  ring.push([rec(4, 4000), rec(5, 4000), rec(6, 4000)]);
  assert.ok(ring.firstSeq >= 4 && ring.firstSeq <= 5, `first ${ring.firstSeq}`);
  assert.equal(ring.lastSeq, 6);
  assert.equal(ring.after(1), undefined);
  assert.deepEqual(ring.after(5)!.map((r) => r.seq), [6]);
  // Many small pushes: contiguous and compacted.
  const big = new RecordRing(50_000);
  for (let s = 1; s <= 5000; s++) big.push([rec(s)]);
  const tail = big.after(big.firstSeq - 1)!;
  assert.equal(tail.length, big.size);
  tail.forEach((r, i) => assert.equal(r.seq, big.firstSeq + i));
});
