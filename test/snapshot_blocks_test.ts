/**
 * Blocks of snapshots (`snapshots` records, docs/storage.md): a log written in blocks reads
 * back, replays, indexes, summarises and resumes exactly like the same snapshots written one
 * record each.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { RunRecorder, type Unsequenced } from "../server/runs/recorder.ts";
import { foldRecords, RunStore } from "../server/runs/store.ts";
import { RecordRing } from "../server/runs/ring.ts";
import {
  type BodyRecord,
  expandSnapshots,
  type LogRecord,
  type SnapshotsRecord,
} from "../server/runs/records.ts";
import { iterateRunLog, parseRunLog } from "../server/runs/runlog.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { indexPaths } from "../server/runs/run_index.ts";
import { csvChunks } from "../server/runs/export.ts";
import type { RunSpec } from "../server/experiments/types.ts";

const R = 3;
const N = 5000; // more than the pyramid's 4096-snapshot level and than one block
const spec: RunSpec = {
  experiment: "shape-matters",
  params: {},
  replicas: R,
  steps: N - 1,
  every: 1,
  backend: "reference",
  seed: 1,
} as unknown as RunSpec;

/** Snapshot i's values: distinct per metric, replica and step, with a NaN now and then. */
function value(m: number, i: number, r: number): number {
  return i % 97 === 13 && r === 1 ? NaN : Math.sin(i * 0.37 + r) * (m + 1) + i * 1e-3;
}

function block(from: number, to: number): Unsequenced<SnapshotsRecord> {
  const n = to - from;
  const metrics: Record<string, Float32Array> = {
    a: new Float32Array(n * R),
    b: new Float32Array(n * R),
  };
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < R; r++) {
      metrics.a[i * R + r] = value(0, from + i, r);
      metrics.b[i * R + r] = value(1, from + i, r);
    }
  }
  return {
    type: "snapshots",
    time: 1000,
    steps: Float64Array.from({ length: n }, (_, i) => from + i),
    wall_ms: Float64Array.from({ length: n }, (_, i) => (from + i) * 0.5),
    metrics,
  };
}

/** The same snapshots one record each. */
function singles(from: number, to: number): Unsequenced<BodyRecord>[] {
  return expandSnapshots([{ ...block(from, to), seq: 0 }]).map((r) => {
    const { seq: _, ...rest } = r;
    return rest;
  });
}

const event = (step: number): Unsequenced<BodyRecord> => ({
  type: "event",
  time: 1000,
  event: { type: "note", step, detail: `at ${step}` },
});

/** Writes a run through a store: blocks (uneven sizes, an event between two) or singles. */
async function writeRun(dir: string, id: string, blocks: boolean) {
  const store = await RunStore.openRunsDir(dir);
  const header = { ...newRunHeader(id, spec, "reference", "test"), metrics: ["a", "b"] };
  const { run, writer } = await store.create(header);
  const recorder = new RunRecorder(header, writer);
  recorder.listen((rs) => foldRecords(run.state, rs));
  recorder.setStatus("running");
  const cuts = [0, 1, 7, 2000, 2001, 4500, N];
  for (let k = 0; k + 1 < cuts.length; k++) {
    const [from, to] = [cuts[k], cuts[k + 1]];
    if (blocks) recorder.emit(to - from === 1 ? singles(from, to) : [block(from, to)]);
    else recorder.emit(singles(from, to));
    if (from === 2000) recorder.emit([event(2000)]);
  }
  recorder.setStatus("finished");
  writer.close();
  await store.finish(run);
  return { store, run, recorder };
}

/** Status records carry the clock's time: equal up to that. */
const untimed = (rs: BodyRecord[]) => rs.map((r) => r.type === "status" ? { ...r, time: 0 } : r);

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "lab-blocks-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a log written in blocks reads back as the same records, seqs gapless", async () => {
  await withDir(async (dir) => {
    const a = await writeRun(join(dir, "a"), "blocks", true);
    const b = await writeRun(join(dir, "b"), "single", false);
    assert.equal(a.recorder.lastSeq, b.recorder.lastSeq);
    assert.equal(a.recorder.lastSeq, N + 3); // N snapshots, 1 event, 2 statuses
    const la = parseRunLog(await Deno.readFile(a.run.path));
    const lb = parseRunLog(await Deno.readFile(b.run.path));
    assert.deepEqual(untimed(la.records), untimed(lb.records));
    assert.deepEqual(la.records.map((r) => r.seq), la.records.map((_, i) => i + 1));
    // The block log really holds blocks, and is smaller.
    const raw: LogRecord[] = [];
    for await (const { record } of iterateRunLog(a.run.path, { blocks: true })) raw.push(record);
    assert.equal(raw.filter((r) => r.type === "snapshots").length, 4);
    assert.ok((await Deno.stat(a.run.path)).size < (await Deno.stat(b.run.path)).size / 2);
    // The catalogue's summary is the same.
    assert.equal(a.run.state.snapshots, N);
    assert.equal(a.run.state.step, N - 1);
    assert.equal(a.run.state.lastSeq, b.run.state.lastSeq);
    assert.equal(a.run.state.missing, 0);
    // Rebuilt from the log alone (derived files deleted), the summary and pyramid are the same.
    const derived = join(dir, "a", "derived");
    const level1 = await Deno.readFile(indexPaths(derived, "blocks").levels[0]);
    await Deno.remove(derived, { recursive: true });
    const again = await (await RunStore.openRunsDir(join(dir, "a"))).load(a.run.path);
    for (const k of ["snapshots", "step", "lastSeq", "missing", "status"] as const) {
      assert.equal(again.state[k], a.run.state[k], k);
    }
    assert.deepEqual(await Deno.readFile(indexPaths(derived, "blocks").levels[0]), level1);
  });
});

Deno.test("blocks build the same pyramid, the same index entries, history and latest", async () => {
  await withDir(async (dir) => {
    const a = await writeRun(join(dir, "a"), "blocks", true);
    const b = await writeRun(join(dir, "b"), "single", false);
    const pa = indexPaths(join(dir, "a", "derived"), "blocks");
    const pb = indexPaths(join(dir, "b", "derived"), "single");
    for (let L = 0; L < 3; L++) {
      assert.deepEqual(await Deno.readFile(pa.levels[L]), await Deno.readFile(pb.levels[L]));
    }
    // .snaps: the same steps and seqs; offsets point at the frame that holds each snapshot.
    const sa = new Float64Array((await Deno.readFile(pa.snaps)).buffer);
    const sb = new Float64Array((await Deno.readFile(pb.snaps)).buffer);
    assert.equal(sa.length, 3 * N);
    for (let i = 0; i < N; i++) {
      assert.equal(sa[3 * i], sb[3 * i]);
      assert.equal(sa[3 * i + 1], sb[3 * i + 1]);
    }
    const q = (fromStep: number, toStep: number, buckets: number | undefined) => ({
      fromStep,
      toStep,
      buckets,
      metrics: ["a", "b"],
      replicas: R,
    });
    for (
      const [from, to, nb] of [
        [0, N, 100],
        [3, 40, undefined],
        [1990, 2010, 8],
        [4090, 4600, 7],
      ] as [number, number, number | undefined][]
    ) {
      assert.deepEqual(
        await a.store.history(a.run, q(from, to, nb)),
        await b.store.history(b.run, q(from, to, nb)),
        `history ${from}..${to}`,
      );
    }
    const latest = await a.store.latest(a.run);
    assert.equal(latest?.step, N - 1);
    assert.deepEqual(latest, await b.store.latest(b.run));
  });
});

Deno.test("a replay from any seq starts inside a block at that seq", async () => {
  await withDir(async (dir) => {
    const a = await writeRun(join(dir, "a"), "blocks", true);
    const b = await writeRun(join(dir, "b"), "single", false);
    for (const after of [0, 1, 5, 1999, 2002, 2003, 4400, N + 1]) {
      assert.deepEqual(
        untimed(await a.store.readAfter(a.run, after, 50)),
        untimed(await b.store.readAfter(b.run, after, 50)),
        `after ${after}`,
      );
    }
  });
});

Deno.test("a CSV export reads blocks column-wise into the same rows, cut at any seq", async () => {
  await withDir(async (dir) => {
    const a = await writeRun(join(dir, "a"), "blocks", true);
    const b = await writeRun(join(dir, "b"), "single", false);
    const csv = async (w: typeof a, lastSeq?: number, blocks = true) => {
      const records = async function* () {
        for await (const { record } of w.store.iterate(w.run, undefined, blocks as true)) {
          yield record;
        }
      };
      let text = "";
      for await (const piece of csvChunks(w.run.header, records(), lastSeq)) text += piece;
      return text;
    };
    const whole = await csv(b);
    assert.equal(whole.split("\n").length, 1 + N * R + 1);
    assert.equal(await csv(a), whole);
    assert.ok(whole.includes(",NaN,"), "a NaN is written as NaN");
    for (const lastSeq of [1, 2, 9, 3000, 4600]) {
      assert.equal(await csv(a, lastSeq), await csv(b, lastSeq));
    }
  });
});

Deno.test("the ring holds copies of blocks and hands out snapshots from any seq", () => {
  const ring = new RecordRing(1 << 20);
  const recorder = new RunRecorder(newRunHeader("ring", spec, "reference", "test"));
  recorder.listen((rs) => ring.push(rs));
  const first = block(0, 10);
  recorder.emit([first]);
  recorder.emit([event(9)]);
  recorder.emit([block(10, 20)]);
  // The driver hands a written block's memory back to the kernel: the ring keeps its own copy.
  first.steps.fill(-1);
  first.wall_ms.fill(-1);
  for (const v of Object.values(first.metrics)) v.fill(-1);
  assert.equal(ring.size, 3);
  assert.equal(ring.firstSeq, 1);
  assert.equal(ring.lastSeq, 21);
  const all = expandSnapshots([block(0, 10), event(9), block(10, 20)].map((r, i) =>
    ({
      ...r,
      seq: [1, 11, 12][i],
    }) as LogRecord
  ));
  for (const after of [0, 3, 9, 10, 11, 15, 20]) {
    assert.deepEqual(ring.after(after), all.filter((r) => r.seq > after), `after ${after}`);
    assert.deepEqual(ring.after(after, 4), all.filter((r) => r.seq > after).slice(0, 4));
  }
  assert.deepEqual(ring.after(21), []);
  assert.equal(recorder.latest?.step, 19);
  assert.equal(recorder.step, 19);
});

Deno.test("a resumed run's regenerated block drops exactly the snapshots its log holds", () => {
  const recorder = new RunRecorder(newRunHeader("resume", spec, "reference", "test"));
  const seen: BodyRecord[] = [];
  recorder.listen((rs) => seen.push(...expandSnapshots(rs)));
  // The log holds seqs 1..12: snapshots 0..9, an event at 9, then snapshot 10.
  const stored = expandSnapshots([
    { ...block(0, 10), seq: 1 },
    { ...event(9), seq: 11 } as BodyRecord,
    { ...block(10, 11), seq: 12 },
  ]);
  // The checkpoint was at step 6: snapshots 7..10 and the event are regenerated.
  const after = stored.filter((r) => r.seq >= 8);
  recorder.resumeAfter(12, 10, after, [{
    type: "event",
    time: 1,
    event: { type: "resumed", step: 6 },
  }]);
  recorder.emit([block(7, 10), event(9), block(10, 16)]);
  const fresh = seen.filter((r) => r.seq > 13);
  assert.deepEqual(fresh.map((r) => r.type === "snapshot" ? r.step : -1), [11, 12, 13, 14, 15]);
  assert.deepEqual(fresh.map((r) => r.seq), [14, 15, 16, 17, 18]);
  assert.equal(recorder.lastSeq, 18);
  assert.equal(recorder.checkpointSeq, 18);
});
