/**
 * A run's replicas split across workers (server/engine/threaded_session.ts, `--threads`) give
 * the records of one session exactly: for shape-matters, linear-label-noise and pegr on wasm,
 * each with a replica that diverges outside the first shard, driveRun with 1, 2 and 3 threads
 * writes the same snapshots, events (divergences, lazy escapes, planned events) and frames,
 * bit for bit. A threaded session's checkpoint continues bit-identically, whether it is opened
 * threaded (its own ranges, whatever the thread count is now) or by one session (rows
 * joined), and a plain checkpoint opened threaded is split by replica. Experiments with
 * whole-run events (large-lr) and one-replica runs stay one session.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type {
  AdvanceResult,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
} from "../server/experiments/types.ts";
import { openWorkerSession } from "../server/engine/worker_session.ts";
import { openSession } from "../server/engine/open.ts";
import { openThreadedSession, threadPlan } from "../server/engine/threaded_session.ts";
import { mergeShardResults } from "../server/engine/shard_merge.ts";
import { driveRun } from "../server/runs/driver.ts";
import { RunRecorder } from "../server/runs/recorder.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { type BodyRecord, expandSnapshots } from "../server/runs/records.ts";
import { decodeRecord, encodeRecord } from "../server/runs/records.ts";

await ensureWasm();

/** Six replicas; replica 4 (in the last shard at 2 and 3 threads) diverges. */
const CASES: Record<string, RunSpec> = {
  "shape-matters": wasm({
    experiment: "shape-matters",
    replicas: 6,
    steps: 60,
    every: 10,
    params: {
      algo: "label-noise",
      d: 16,
      n: 8,
      r: 3,
      data: "per-replica",
      lr: [0.01, 0.02, 0.015, 0.005, 10, 0.012],
      lr_schedule: [[30, 0.5]],
    },
  }),
  "linear-label-noise": wasm({
    experiment: "linear-label-noise",
    replicas: 6,
    steps: 60,
    every: 10,
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
  pegr: wasm({
    experiment: "pegr",
    replicas: 6,
    steps: 40,
    every: 10,
    params: {
      algo: "pegr",
      d: 20,
      n: 6,
      m: 3,
      n_test: 20,
      pegr_off: 25,
      sigma0: [0.01, 0.02, 0.01, 0.03, 10, 0.02],
      sigma_p: [1, 0.5, 1.5, 1, 1, 0.8],
      lr: [0.02, 0.05, 0.03, 0.04, 100, 0.01],
    },
  }),
};

function wasm(body: Record<string, unknown>): RunSpec {
  return { ...validateRunSpec(body), backend: "wasm" };
}

/** Opens sessions in workers, noting each (shard) spec's replica range. */
function countingOpen(ranges: string[]) {
  return (spec: RunSpec, state?: SessionState) => {
    ranges.push(`${spec.firstReplica ?? 0}+${spec.replicas}`);
    return openWorkerSession(spec, state);
  };
}

/** What driveRun records for `spec` on `threads` threads, minus host times. */
async function recordsOf(spec: RunSpec, threads: number, ranges: string[] = []) {
  const session = await openThreadedSession(spec, undefined, {
    threads,
    open: countingOpen(ranges),
  });
  const recorder = new RunRecorder(newRunHeader("t", spec, session.backend, session.adapter));
  const records: BodyRecord[] = [];
  recorder.listen((rs) => records.push(...expandSnapshots(rs)));
  try {
    const result = await driveRun(session, spec, recorder, { chunkMs: 1 });
    assert.notEqual(result.status, "failed", result.error);
  } finally {
    await session.dispose();
  }
  return records.map((r) => {
    const { time: _t, ...rest } = r as BodyRecord & { time?: number; wall_ms?: number };
    if ("wall_ms" in rest) delete rest.wall_ms;
    return rest;
  });
}

for (const [name, spec] of Object.entries(CASES)) {
  Deno.test(`${name}: 1, 2 and 3 threads record the same run bit for bit`, async () => {
    const one = await recordsOf(spec, 1);
    const events = one.filter((r) => r.type === "event").map((r) => JSON.stringify(r));
    assert.ok(
      events.some((e) => e.includes(`"replica_diverged"`) && e.includes(`"replica":4`)),
      `replica 4 diverges: ${events.join("\n")}`,
    );
    assert.ok(one.some((r) => r.type === "frame") || name === "pegr", "frames are compared");
    for (const threads of [2, 3]) {
      const ranges: string[] = [];
      const many = await recordsOf(spec, threads, ranges);
      assert.deepEqual(ranges, threads === 2 ? ["0+3", "3+3"] : ["0+2", "2+2", "4+2"]);
      assert.deepStrictEqual(many, one, `${threads} threads`);
    }
  });
}

Deno.test("linear-label-noise: lazy escapes come from several shards", async () => {
  const records = await recordsOf(CASES["linear-label-noise"], 3);
  const shards = new Set<number>();
  for (const r of records) {
    if (r.type === "event" && r.event.type === "phase_change" && r.event.phase === "lazy_escape") {
      shards.add(Math.floor(r.event.replica! / 2));
    }
  }
  assert.ok(shards.size >= 2, `lazy escapes in shards ${[...shards]}`);
});

Deno.test("merged events at one step: divergences first, then by global replica", () => {
  const lazy = (step: number, replica: number): RunEvent => ({
    type: "phase_change",
    step,
    phase: "lazy_escape",
    replica,
  });
  const merged = mergeShardResults([
    { first: 0, result: { snapshots: [], frames: [], events: [lazy(10, 1), lazy(20, 0)] } },
    {
      first: 2,
      result: {
        snapshots: [],
        frames: [],
        events: [{ type: "replica_diverged", step: 10, replica: 1 }, lazy(10, 0)],
      },
    },
  ]);
  assert.deepEqual(merged.events, [
    { type: "replica_diverged", step: 10, replica: 3 },
    lazy(10, 1),
    lazy(10, 2),
    lazy(20, 0),
  ]);
});

/** Advances to each target, collecting the results. */
async function advanceAll(session: KernelSession, targets: number[]): Promise<AdvanceResult[]> {
  const out: AdvanceResult[] = [];
  for (const t of targets) out.push(await session.advance(t));
  return out;
}

function roundTrip(state: SessionState): SessionState {
  return decodeRecord<SessionState>(encodeRecord(state));
}

Deno.test("a threaded checkpoint continues bit-identically, threaded on its ranges or joined", async () => {
  for (const spec of [CASES["shape-matters"], CASES["linear-label-noise"]]) {
    const first = [0, 20, 30];
    const rest = [40, spec.steps];
    const straight = await openSession(spec);
    const whole = await advanceAll(straight, [...first, ...rest]);
    await straight.dispose();
    const expected = whole.slice(first.length);

    const threaded = await openThreadedSession(spec, undefined, { threads: 3 });
    await advanceAll(threaded, first);
    const state = roundTrip((await threaded.exportState!())!);
    await threaded.dispose();
    assert.deepEqual(state.shards?.map((s) => [s.first, s.count]), [[0, 2], [2, 2], [4, 2]]);

    // Opened with 1 and 2 threads now: the checkpoint's three shards are used.
    for (const threads of [1, 2]) {
      const ranges: string[] = [];
      const resumed = await openThreadedSession(spec, state, {
        threads,
        open: countingOpen(ranges),
      });
      assert.deepEqual(ranges, ["0+2", "2+2", "4+2"]);
      assert.deepStrictEqual(stripWall(await advanceAll(resumed, rest)), stripWall(expected));
      await resumed.dispose();
    }
    // One session in this thread (e.g. `lab resume` on another backend): rows joined.
    const joined = await openSession(spec, state);
    assert.deepStrictEqual(stripWall(await advanceAll(joined, rest)), stripWall(expected));
    await joined.dispose();

    // A plain checkpoint opened with 2 threads is split by replica.
    const plain = await openSession(spec);
    await advanceAll(plain, first);
    const plainState = roundTrip((await plain.exportState!())!);
    await plain.dispose();
    const ranges: string[] = [];
    const split = await openThreadedSession(spec, plainState, {
      threads: 2,
      open: countingOpen(ranges),
    });
    assert.deepEqual(ranges, ["0+3", "3+3"]);
    assert.deepStrictEqual(stripWall(await advanceAll(split, rest)), stripWall(expected));
    await split.dispose();
  }
});

function stripWall(results: AdvanceResult[]) {
  return results.map((r) => ({ ...r, snapshots: r.snapshots.map((s) => ({ ...s, wallMs: 0 })) }));
}

Deno.test("large-lr, label-noise-anneal, webgpu, one thread and runs below two replicas per thread stay one session", async () => {
  const largeLr = wasm({
    experiment: "large-lr",
    replicas: 4,
    steps: 20,
    every: 10,
    params: { d: 10, m: 6, n_test: 20 },
  });
  assert.equal(threadPlan(largeLr, 4), null);
  const anneal = wasm({ experiment: "label-noise-anneal", replicas: 4, steps: 20, every: 10 });
  assert.equal(threadPlan(anneal, 4), null);
  const ranges: string[] = [];
  const session = await openThreadedSession(largeLr, undefined, {
    threads: 4,
    open: countingOpen(ranges),
  });
  await session.advance(20);
  await session.dispose();
  assert.deepEqual(ranges, ["0+4"]);

  const shape = CASES["shape-matters"];
  assert.equal(
    threadPlan({ ...shape, replicas: 1, params: { ...shape.params, lr: 0.01 } }, 8),
    null,
  );
  assert.deepEqual(threadPlan(shape, 8)?.map((r) => r.count), [2, 2, 2]);
  assert.equal(threadPlan({ ...shape, backend: "webgpu" }, 8), null);
  assert.equal(threadPlan(shape, 1), null);
});

Deno.test("a run that is not split is opened by `single` (the CLI's: in its own thread)", async () => {
  const spec = CASES["shape-matters"];
  const split: string[] = [], unsplit: string[] = [];
  const opts = {
    open: countingOpen(split),
    single: (s: RunSpec, st?: SessionState) => {
      unsplit.push(`${s.firstReplica ?? 0}+${s.replicas}`);
      return openSession(s, st);
    },
  };
  await (await openThreadedSession(spec, undefined, { threads: 1, ...opts })).dispose();
  assert.deepEqual([split, unsplit], [[], ["0+6"]]);
  await (await openThreadedSession(spec, undefined, { threads: 2, ...opts })).dispose();
  assert.deepEqual([split, unsplit], [["0+3", "3+3"], ["0+6"]]);
});
