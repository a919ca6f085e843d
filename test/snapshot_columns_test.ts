/**
 * Snapshots column-wise (AdvanceOptions.columns, server/engine/snapshot_columns.ts): a wasm
 * session of shape-matters, pegr or linear-label-noise advanced with `{columns: true}` reports
 * `result.columns` (and no snapshot objects) holding exactly the snapshots a twin session
 * advanced to the same targets without the option reports: the same steps and float32 metric
 * bits, wall times non-decreasing, the same events and frames. So for one replica and several,
 * per-replica data, advances spanning several kernel calls (schedule milestones, call length,
 * frame steps), a session resumed from a checkpoint, a run split over 2 worker threads
 * (mergeColumns; merged buffers recycled in the main thread), and a session in a Worker
 * (its columns transferred). Also mergeColumns' merge and its out-of-step error, ColumnBuilder's
 * growth and step numbering, and a recycled buffer's old contents never showing.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type {
  AdvanceResult,
  KernelSession,
  RunSpec,
  Snapshot,
  SnapshotColumns,
} from "../server/experiments/types.ts";
import { openSession } from "../server/engine/open.ts";
import { openWorkerSession } from "../server/engine/worker_session.ts";
import { openThreadedSession } from "../server/engine/threaded_session.ts";
import { mergeColumns, mergeSnapshots } from "../server/engine/shard_merge.ts";
import {
  columnBuffers,
  ColumnBuilder,
  columnsBuffer,
  columnsOf,
  concatColumns,
  recycleColumnBuffers,
  snapshotsOf,
  snapshotStepsBetween,
} from "../server/engine/snapshot_columns.ts";
import { isSnapshotStep } from "../server/engine/snapshots.ts";

await ensureWasm();

function wasm(body: Record<string, unknown>): RunSpec {
  return { ...validateRunSpec(body), backend: "wasm" };
}

/** Runs with something in them: divergences, milestones, frames, per-replica data. */
const CASES: Record<string, { spec: RunSpec; targets: number[] }> = {
  "shape-matters, 1 replica": {
    spec: wasm({ experiment: "shape-matters", replicas: 1, steps: 50, every: 1, params: {} }),
    targets: [0, 7, 50],
  },
  "shape-matters, 5 replicas, per-replica data, milestones, a divergence": {
    spec: wasm({
      experiment: "shape-matters",
      replicas: 5,
      steps: 130,
      every: 3,
      params: {
        algo: "label-noise",
        d: 16,
        n: 8,
        data: "per-replica",
        lr: [0.01, 0.02, 10, 0.005, 0.015],
        // Each milestone ends a kernel call: one advance below spans several.
        lr_schedule: [[20, 0.5], [41, 0.5], [77, 0.5]],
      },
    }),
    targets: [45, 46, 100, 130],
  },
  "pegr, 1 replica": {
    spec: wasm({
      experiment: "pegr",
      replicas: 1,
      steps: 30,
      every: 4,
      params: { algo: "pegr", d: 20, n: 6, m: 3, n_test: 20, pegr_off: 15 },
    }),
    targets: [10, 30],
  },
  "pegr, 4 replicas, a divergence": {
    spec: wasm({
      experiment: "pegr",
      replicas: 4,
      steps: 30,
      every: 5,
      params: {
        algo: "pegr",
        d: 20,
        n: 6,
        m: 3,
        n_test: 20,
        pegr_off: 15,
        sigma0: [0.01, 10, 0.02, 0.03],
        lr: [0.02, 100, 0.01, 0.04],
      },
    }),
    targets: [12, 30],
  },
  // m·d large enough that the wasm session cuts an advance into several calls (call_length.ts).
  "linear-label-noise, 1 replica, several calls per advance": {
    spec: wasm({
      experiment: "linear-label-noise",
      replicas: 1,
      steps: 900,
      every: 1,
      params: { algo: "label-noise-sgd", m: 1000, d: 20, n: 40, n_test: 20 },
    }),
    targets: [0, 500, 900],
  },
  "linear-label-noise, 4 replicas, per-replica data and init, frames, a divergence": {
    spec: wasm({
      experiment: "linear-label-noise",
      replicas: 4,
      steps: 80,
      every: 2,
      params: {
        algo: "label-noise-sgd",
        m: 9,
        d: 5,
        n: 11,
        n_test: 7,
        data: "per-replica",
        init: "per-replica",
        lr: [0.05, 0.1, 9, 0.15],
        sigma: 1,
        frame_every: 3,
      },
    }),
    targets: [33, 80],
  },
};

/** What must match between the two forms: everything but the wall clock. */
function comparable(snapshots: Snapshot[]) {
  return snapshots.map(({ wallMs: _w, ...rest }) => rest);
}

/** The columns of `got` hold `want`'s snapshots; events and frames are the same. */
function assertSameResult(got: AdvanceResult, want: AdvanceResult, R: number, what: string) {
  assert.ok(got.columns, `${what}: columns reported`);
  assert.deepEqual(got.snapshots, [], `${what}: no snapshot objects beside the columns`);
  const c = got.columns;
  assert.equal(c.replicas, R, what);
  const rows = c.steps.length;
  assert.equal(c.wallMs.length, rows, what);
  for (const v of Object.values(c.metrics)) assert.equal(v.length, rows * R, what);
  for (let i = 1; i < rows; i++) assert.ok(c.wallMs[i] >= c.wallMs[i - 1], `${what}: wallMs`);
  assert.ok(c.wallMs.every((w) => Number.isFinite(w) && w >= 0), `${what}: wallMs finite`);
  assert.deepStrictEqual(comparable(snapshotsOf(c)), comparable(want.snapshots), what);
  assert.deepStrictEqual(got.events, want.events, `${what}: events`);
  assert.deepStrictEqual(got.frames, want.frames, `${what}: frames`);
}

/** Advances both to each target, the first with columns asked; compares every result. */
async function compareTwins(
  columns: KernelSession,
  plain: KernelSession,
  spec: RunSpec,
  targets: number[],
  what: string,
): Promise<number> {
  let rows = 0;
  for (const t of targets) {
    const got = await columns.advance(t, { columns: true });
    const want = await plain.advance(t);
    assertSameResult(got, want, spec.replicas, `${what}, advance(${t})`);
    assert.equal(columns.step, plain.step, what);
    rows += got.columns!.steps.length;
  }
  return rows;
}

/** Snapshot steps of a whole run: 0, every multiple of `every`, the last step. */
function runRows(spec: RunSpec): number {
  return snapshotStepsBetween(0, spec.steps, spec.every, spec.steps) + 1;
}

for (const [name, { spec, targets }] of Object.entries(CASES)) {
  Deno.test(`${name}: columns hold the snapshots bit for bit`, async () => {
    const [a, b] = [await openSession(spec), await openSession(spec)];
    try {
      const rows = await compareTwins(a, b, spec, targets, name);
      assert.equal(rows, runRows(spec), "every snapshot of the run, once");
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  Deno.test(`${name}: resumed from a checkpoint, columns continue bit for bit`, async () => {
    const first = await openSession(spec);
    const mid = targets[Math.floor(targets.length / 2)] || Math.floor(spec.steps / 2);
    await first.advance(mid, { columns: true });
    const state = (await first.exportState!())!;
    await first.dispose();
    const [a, b] = [await openSession(spec, state), await openSession(spec, state)];
    try {
      await compareTwins(a, b, spec, [...targets.filter((t) => t > mid), spec.steps], name);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });
}

/** Runs a threaded split takes (at least 2 replicas per thread). */
const SPLIT_CASES = [
  "shape-matters, 5 replicas, per-replica data, milestones, a divergence",
  "pegr, 4 replicas, a divergence",
  "linear-label-noise, 4 replicas, per-replica data and init, frames, a divergence",
];

for (const name of SPLIT_CASES) {
  const { spec, targets } = CASES[name];
  Deno.test(`${name}: 2 threads merge columns into one session's snapshots`, async () => {
    const split = await openThreadedSession(spec, undefined, { threads: 2 });
    const one = await openSession(spec);
    try {
      assert.equal(split.threads, 2, "the run is split");
      await compareTwins(split, one, spec, targets, `${name}, 2 threads`);
    } finally {
      await split.dispose();
      await one.dispose();
    }
  });
}

Deno.test("a session in a Worker transfers its columns, bit for bit", async () => {
  for (
    const name of [
      "shape-matters, 5 replicas, per-replica data, milestones, a divergence",
      "pegr, 1 replica",
    ]
  ) {
    const { spec, targets } = CASES[name];
    const inWorker = await openWorkerSession(spec);
    const here = await openSession(spec);
    try {
      await compareTwins(inWorker, here, spec, targets, `${name} in a Worker`);
      // Without the option, the Worker session reports snapshots as before.
      const again = await openWorkerSession(spec);
      try {
        const r = await again.advance(targets[0]);
        assert.equal(r.columns, undefined);
        assert.ok(r.snapshots.length > 0);
      } finally {
        await again.dispose();
      }
    } finally {
      await inWorker.dispose();
      await here.dispose();
    }
  }
});

/** Columns of rows `steps` for `R` replicas, metric "a" = 100·row + replica, "b" = −that. */
function sample(steps: number[], R: number, wall: number[] = steps, shift = 0): SnapshotColumns {
  const a = new Float32Array(steps.length * R);
  for (let i = 0; i < steps.length; i++) {
    for (let r = 0; r < R; r++) a[i * R + r] = 100 * i + r + shift;
  }
  return {
    replicas: R,
    steps: Float64Array.from(steps),
    wallMs: Float64Array.from(wall),
    metrics: { a, b: a.map((x) => -x) },
  };
}

Deno.test("mergeColumns concatenates each row's shards in replica order, wallMs the latest", () => {
  const left = sample([0, 10, 20], 1, [1, 5, 9]);
  const right = sample([0, 10, 20], 2, [2, 4, 12], 10);
  const merged = mergeColumns([left, right]);
  assert.equal(merged.replicas, 3);
  assert.deepEqual(Array.from(merged.steps), [0, 10, 20]);
  assert.deepEqual(Array.from(merged.wallMs), [2, 5, 12]);
  assert.deepEqual(Array.from(merged.metrics.a), [0, 10, 11, 100, 110, 111, 200, 210, 211]);
  assert.deepEqual(Array.from(merged.metrics.b), Array.from(merged.metrics.a, (x) => -x));
  // The same as merging the snapshots.
  assert.deepStrictEqual(
    snapshotsOf(merged),
    mergeSnapshots([snapshotsOf(left), snapshotsOf(right)]),
  );
  assert.equal(mergeColumns([]).steps.length, 0);
});

Deno.test("mergeColumns refuses shards out of step, as mergeSnapshots does", () => {
  const message = "shards out of step: snapshots at [0, 10] and at [0, 11]";
  assert.throws(() => mergeColumns([sample([0, 10], 1), sample([0, 11], 1)]), { message });
  assert.throws(
    () => mergeSnapshots([snapshotsOf(sample([0, 10], 1)), snapshotsOf(sample([0, 11], 1))]),
    { message },
  );
  assert.throws(
    () => mergeColumns([sample([0, 10], 1), sample([0], 1)]),
    { message: "shards out of step: snapshots at [0, 10] and at [0]" },
  );
});

Deno.test("ColumnBuilder grows, numbers snapshot steps as isSnapshotStep, and concatenates", () => {
  const R = 2;
  const names = ["x", "y"];
  // A kernel buffer of 7 snapshots laid out [snapshot][metric][replica].
  const buffer = new Float32Array(7 * names.length * R).map((_, i) => i / 8);
  const b = new ColumnBuilder(names, R, 1);
  b.appendSnapshot({ step: 0, wallMs: 0, metrics: { x: new Float32Array([NaN, 1]) } });
  // every=4 from step 0 to the run's end at 26: 4, 8, …, 24, 26.
  b.appendMetricBuffer(new Int32Array(buffer.buffer), 7, 4, 4, 26);
  const c = b.finish();
  assert.equal(b.rows, 8);
  assert.deepEqual(Array.from(c.steps), [0, 4, 8, 12, 16, 20, 24, 26]);
  for (const s of c.steps) assert.ok(isSnapshotStep(s, 4, 26));
  assert.equal(snapshotStepsBetween(0, 26, 4, 26), 7);
  assert.equal(snapshotStepsBetween(3, 8, 4, 26), 2);
  assert.equal(snapshotStepsBetween(8, 8, 4, 26), 0);
  assert.deepEqual(Array.from(c.metrics.x.subarray(0, 4)), [NaN, 1, 0, 0.125]);
  assert.deepEqual(Array.from(c.metrics.y.subarray(0, 4)), [NaN, NaN, 0.25, 0.375]);
  for (let i = 0; i < 7; i++) {
    for (let q = 0; q < 2; q++) {
      assert.deepEqual(
        Array.from(c.metrics[names[q]].subarray((i + 1) * R, (i + 2) * R)),
        Array.from(buffer.subarray((i * 2 + q) * R, (i * 2 + q + 1) * R)),
      );
    }
  }
  const joined = concatColumns([c, columnsOf(snapshotsOf(c), R)], R);
  assert.deepStrictEqual(snapshotsOf(joined), [...snapshotsOf(c), ...snapshotsOf(c)]);
});

Deno.test("a recycled buffer is reused and its old contents never show", async () => {
  const { spec, targets } =
    CASES["shape-matters, 5 replicas, per-replica data, milestones, a divergence"];
  const [a, b] = [await openSession(spec), await openSession(spec)];
  try {
    let previous: ArrayBuffer | undefined;
    let from = -1; // the step-0 row comes with the first call
    for (const t of targets) {
      // A spare buffer full of 0xff bytes (NaN, steps NaN), sized for this call's rows and the
      // run's 4 metrics.
      const rows = snapshotStepsBetween(from, t, spec.every, spec.steps);
      from = t;
      const garbage = new ArrayBuffer(rows * (16 + 4 * spec.replicas * 4));
      new Uint8Array(garbage).fill(0xff);
      recycleColumnBuffers([garbage]);
      const got = await a.advance(t, { columns: true });
      const want = await b.advance(t);
      assertSameResult(got, want, spec.replicas, `advance(${t}) into a recycled buffer`);
      const buffers = columnBuffers(got.columns!);
      if (rows === 0) continue; // nothing to write: a buffer of its own
      assert.deepEqual(buffers, [garbage], "the session wrote into the spare buffer");
      assert.notEqual(buffers[0], previous);
      previous = buffers[0];
    }
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

Deno.test("the spare buffer pool keeps the largest buffers: a run's big calls reuse memory after its small first ones", () => {
  // The first calls of a run are small (one snapshot, then a rate estimate): they must not
  // fill the pool for good.
  recycleColumnBuffers([1, 2, 3, 4, 5].map((k) => new ArrayBuffer(16 * k)));
  const big = new ArrayBuffer(1 << 20);
  recycleColumnBuffers([big]);
  assert.equal(columnsBuffer(1 << 20), big, "the big buffer is reused, not a fresh one");
  // What is left are buffers too small for that size: a fresh one is made.
  assert.notEqual(columnsBuffer(1 << 20), big);
});
