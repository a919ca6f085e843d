/**
 * Integrity of the run store: every record carries a CRC32C; a damaged record is skipped and
 * reported while every intact record before and after it is still served; a finished run stays
 * finished and its file is never cut or rewritten; only the torn tail of a run that was writing
 * is dropped; version-1 logs (no checksums) still open. Startup uses the catalogue entry, and a
 * changed log is read again.
 */
import assert from "node:assert/strict";
import { frameRecords, parseRunLog, readRunLog, RunLogWriter } from "../server/runs/runlog.ts";
import type { BodyRecord, HeaderRecord, SnapshotRecord } from "../server/runs/records.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { RunManager } from "../server/runs/manager.ts";

const ID = "shape-matters-20260101-000000-abcd";

function header(version = 2): HeaderRecord {
  return {
    type: "header",
    format: "lab-runlog",
    version,
    id: ID,
    spec: validateRunSpec({ experiment: "shape-matters", replicas: 2, steps: 1000, every: 1 }),
    code_version: "test",
    backend: "reference",
    adapter: "x",
    created: new Date(0).toISOString(),
    metrics: ["train_loss", "test_error"],
    frames: [],
  };
}

function snapshot(seq: number): SnapshotRecord {
  return {
    type: "snapshot",
    seq,
    step: seq,
    wall_ms: seq / 2,
    time: 1000 + seq,
    metrics: {
      train_loss: new Float32Array([seq, -seq]),
      test_error: new Float32Array([seq / 7, NaN]),
    },
  };
}

function bodyRecords(n: number, status: "finished" | "running"): BodyRecord[] {
  const out: BodyRecord[] = [{ type: "status", seq: 1, time: 1, status: "running", step: 0 }];
  for (let s = 2; s <= n; s++) out.push(snapshot(s));
  if (status === "finished") {
    out.push({ type: "status", seq: n + 1, time: 2, status: "finished", step: n });
  }
  return out;
}

/** Writes a log and returns its bytes and each body record's frame range. */
async function writeLog(
  path: string,
  records: BodyRecord[],
): Promise<{ bytes: Uint8Array; frames: { seq: number; offset: number; end: number }[] }> {
  const w = await RunLogWriter.create(path, header());
  const frames: { seq: number; offset: number; end: number }[] = [];
  w.onAppend((placed) => {
    for (const p of placed) frames.push({ seq: p.record.seq, offset: p.offset, end: p.end });
  });
  for (let i = 0; i < records.length; i += 50) w.appendSync(records.slice(i, i + 50));
  w.close();
  return { bytes: await Deno.readFile(path), frames };
}

/** A small deterministic generator (mulberry32), so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pack = (r: unknown) => JSON.stringify(r, (_k, v) => v instanceof Float32Array ? [...v] : v);

Deno.test("corruption at random positions: every record whose frame is intact is still read, no damaged one is", async () => {
  const dir = await Deno.makeTempDir();
  const records = bodyRecords(300, "finished");
  const { bytes, frames } = await writeLog(`${dir}/a.lablog`, records);
  const bySeq = new Map(records.map((r) => [r.seq, pack(r)]));
  const bodyStart = frames[0].offset;
  for (let trial = 0; trial < 60; trial++) {
    const random = rng(1000 + trial);
    const copy = bytes.slice();
    const hits = new Set<number>();
    const flips = 1 + Math.floor(random() * 6);
    for (let k = 0; k < flips; k++) {
      const at = bodyStart + Math.floor(random() * (copy.length - bodyStart));
      copy[at] ^= 1 + Math.floor(random() * 255);
      hits.add(at);
    }
    const log = parseRunLog(copy);
    const served = new Map(log.records.map((r) => [r.seq, pack(r)]));
    for (const f of frames) {
      const damaged = [...hits].some((h) => h >= f.offset && h < f.end);
      if (!damaged) {
        assert.equal(served.get(f.seq), bySeq.get(f.seq), `seed ${1000 + trial}: seq ${f.seq}`);
      } else assert.ok(!served.has(f.seq), `seed ${1000 + trial}: damaged seq ${f.seq} served`);
    }
    assert.ok(log.damage.length >= 1, `seed ${1000 + trial}: damage reported`);
    assert.equal(log.truncated, false);
  }
});

Deno.test("the length prefix of record 50 overwritten: the finished run stays finished, uncut, and reports the damage", async () => {
  const dataDir = await Deno.makeTempDir();
  await Deno.mkdir(`${dataDir}/runs`);
  const path = `${dataDir}/runs/${ID}.lablog`;
  const records = bodyRecords(400, "finished");
  const { frames } = await writeLog(path, records);
  const f50 = frames.find((f) => f.seq === 50)!;
  const file = await Deno.open(path, { read: true, write: true });
  await file.seek(f50.offset, Deno.SeekMode.Start);
  await file.write(new Uint8Array([0xff, 0xff, 0x7f, 0x00]));
  file.close();
  const before = await Deno.readFile(path);

  const m = await RunManager.open({ dataDir });
  try {
    const [s] = m.summaries();
    assert.equal(s.status, "finished");
    assert.equal(s.last_seq, 401);
    assert.deepEqual(s.damaged?.records, 1);
    assert.equal(s.damaged?.ranges[0].offset, f50.offset);
    assert.equal(s.damaged?.ranges[0].length, f50.end - f50.offset);
    assert.deepEqual(await Deno.readFile(path), before, "the file is not cut or rewritten");
    // Replay serves everything but record 50, in order, from the log.
    const replay = await m.readAfter(ID, 0);
    assert.deepEqual(
      replay.map((r) => r.seq),
      records.map((r) => r.seq).filter((s) => s !== 50),
    );
    // History (from the index) has every snapshot but the damaged one.
    const h = await m.history(ID, { metrics: ["train_loss"], replicas: 2 });
    assert.equal(h!.snapshots, 398);
    const csv = (await Array.fromAsync(m.csv(ID))).join("");
    assert.equal(csv.trim().split("\n").length, 1 + 2 * 398);
  } finally {
    await m.shutdown();
  }
  // A restart gives the same answer (from the catalogue this time).
  const again = await RunManager.open({ dataDir });
  assert.deepEqual(again.summaries()[0].damaged?.records, 1);
  assert.equal(again.summaries()[0].status, "finished");
  await again.shutdown();
});

Deno.test("a torn tail is dropped only from a run that was writing; a finished run's tail is never cut", async () => {
  for (const status of ["running", "finished"] as const) {
    const dataDir = await Deno.makeTempDir();
    await Deno.mkdir(`${dataDir}/runs`);
    const path = `${dataDir}/runs/${ID}.lablog`;
    const records = bodyRecords(100, status);
    const { bytes, frames } = await writeLog(path, records);
    // A crash mid-write: half of one more frame.
    const extra = frameRecords([snapshot(records.length + 1)], 2);
    await Deno.writeFile(path, extra.subarray(0, extra.length >> 1), { append: true });
    // resume: false, so a run in flight gets the interrupted mark (resume cuts the same tail).
    const m = await RunManager.open({ dataDir, resume: false });
    const [s] = m.summaries();
    const after = await Deno.readFile(path);
    if (status === "running") {
      assert.equal(s.status, "interrupted");
      // The torn half-frame is gone; the interrupted mark follows the last whole record.
      assert.deepEqual(after.subarray(0, bytes.length), bytes);
      const log = parseRunLog(after);
      assert.equal(log.truncated, false);
      assert.equal(log.damage.length, 0);
      assert.equal(log.records.length, records.length + 1);
      assert.equal(log.records.at(-1)!.type, "status");
    } else {
      assert.equal(s.status, "finished");
      assert.equal(after.length, bytes.length + (extra.length >> 1), "nothing cut");
    }
    assert.equal(
      (await m.readAfter(ID, 0)).length,
      records.length + (status === "running" ? 1 : 0),
    );
    assert.ok(frames.length > 0);
    await m.shutdown();
  }
});

Deno.test("a version-1 log (no checksums) still opens, and an interrupted mark is appended in its framing", async () => {
  const dataDir = await Deno.makeTempDir();
  await Deno.mkdir(`${dataDir}/runs`);
  const path = `${dataDir}/runs/${ID}.lablog`;
  const records = bodyRecords(60, "running");
  await Deno.writeFile(path, frameRecords([header(1), ...records], 1));
  const m = await RunManager.open({ dataDir, resume: false });
  const [s] = m.summaries();
  assert.equal(s.status, "interrupted");
  assert.equal(s.damaged, undefined);
  const log = await readRunLog(path);
  assert.equal(log.version, 1);
  assert.equal(log.records.length, records.length + 1);
  assert.equal((await m.history(ID, { metrics: ["test_error"], replicas: 2 }))!.snapshots, 59);
  await m.shutdown();
});

Deno.test("startup trusts a catalogue entry only while the log is unchanged", async () => {
  const dataDir = await Deno.makeTempDir();
  await Deno.mkdir(`${dataDir}/runs`);
  const path = `${dataDir}/runs/${ID}.lablog`;
  const records = bodyRecords(200, "finished");
  const { frames } = await writeLog(path, records);
  let m = await RunManager.open({ dataDir });
  await m.shutdown();
  const entry = JSON.parse(await Deno.readTextFile(`${dataDir}/runs/derived/${ID}.json`));
  assert.equal(entry.state.status, "finished");
  // Damage written after the entry (same size, new mtime) is found on the next start.
  const f = frames.find((x) => x.seq === 120)!;
  const file = await Deno.open(path, { read: true, write: true });
  await file.seek(f.offset + 9, Deno.SeekMode.Start);
  await file.write(new Uint8Array([0x55]));
  file.close();
  await Deno.utime(path, new Date(), new Date(Date.now() + 5000));
  m = await RunManager.open({ dataDir });
  assert.equal(m.summaries()[0].damaged?.records, 1);
  assert.equal(m.summaries()[0].status, "finished");
  await m.shutdown();
});

Deno.test("damage made in place after startup (same size, mtime put back) is reported by the first read that meets it, and kept in the catalogue", async () => {
  const dataDir = await Deno.makeTempDir();
  await Deno.mkdir(`${dataDir}/runs`);
  const path = `${dataDir}/runs/${ID}.lablog`;
  const records = bodyRecords(200, "finished");
  const { frames } = await writeLog(path, records);
  const m = await RunManager.open({ dataDir });
  const f = frames.find((x) => x.seq === 120)!;
  try {
    assert.equal(m.summaries()[0].damaged, undefined);
    // A flipped byte inside record 120, the mtime put back: the catalogue entry still matches.
    const { atime, mtime } = await Deno.stat(path);
    const file = await Deno.open(path, { read: true, write: true });
    await file.seek(f.offset + 9, Deno.SeekMode.Start);
    await file.write(new Uint8Array([0x55]));
    file.close();
    await Deno.utime(path, atime!, mtime!);
    const replay = await m.readAfter(ID, 0);
    assert.deepEqual(
      replay.map((r) => r.seq),
      records.map((r) => r.seq).filter((s) => s !== 120),
    );
    const [s] = m.summaries();
    assert.equal(s.status, "finished");
    assert.equal(s.damaged?.records, 1);
    assert.equal(s.damaged?.ranges[0].offset, f.offset);
    assert.equal(s.damaged?.ranges[0].length, f.end - f.offset);
    // A second read that meets it does not count it twice.
    await Array.fromAsync(m.csv(ID));
    assert.equal(m.summaries()[0].damaged?.records, 1);
    const entry = JSON.parse(await Deno.readTextFile(`${dataDir}/runs/derived/${ID}.json`));
    assert.equal(entry.state.damage.length, 1);
  } finally {
    await m.shutdown();
  }
  // A restart trusts the entry (the log's size and mtime are unchanged) and still reports it.
  const again = await RunManager.open({ dataDir });
  assert.equal(again.summaries()[0].damaged?.records, 1);
  assert.equal(again.summaries()[0].status, "finished");
  await again.shutdown();
});

Deno.test("a run whose final status record is damaged stays finished: not recomputed, not marked interrupted, not rewritten", async () => {
  for (const resume of [true, false]) {
    const dataDir = await Deno.makeTempDir();
    await Deno.mkdir(`${dataDir}/runs`);
    const path = `${dataDir}/runs/${ID}.lablog`;
    // Snapshots up to the spec's last step (1000), then the finished status (seq 1001).
    const { frames } = await writeLog(path, bodyRecords(1000, "finished"));
    const last = frames[frames.length - 1];
    const file = await Deno.open(path, { read: true, write: true });
    await file.seek(last.offset + 9, Deno.SeekMode.Start);
    await file.write(new Uint8Array([0xee]));
    file.close();
    const before = await Deno.readFile(path);

    for (let start = 0; start < 2; start++) {
      const m = await RunManager.open({ dataDir, resume });
      try {
        const [s] = m.summaries();
        assert.equal(s.status, "finished", `resume ${resume}, start ${start}`);
        assert.equal(m.inFlight() + m.queued(), 0, "nothing is recomputed");
        assert.equal(s.damaged?.records, 1);
        assert.equal(s.damaged?.ranges[0].offset, last.offset);
        assert.deepEqual(await Deno.readFile(path), before, "the log is not cut or appended to");
      } finally {
        await m.shutdown();
      }
    }
    await Deno.remove(dataDir, { recursive: true });
  }
});
