/**
 * A late subscriber to an ended run whose log was damaged in place after the server read it
 * (issue 10): every intact record is replayed, each damaged one is announced by a `skipped`
 * message with reason `damaged`, and when the damaged record is the final status, that
 * message says how the run ended (from the run's summary), so the subscriber is not left
 * waiting for a status that will never come. docs/protocol.md, docs/storage.md.
 */
import assert from "node:assert/strict";
import { RawStream, startTestLab, waitFor } from "./lab_harness.ts";
import { RunLogWriter } from "../server/runs/runlog.ts";
import type { BodyRecord, HeaderRecord } from "../server/runs/records.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";

const ID = "shape-matters-20260101-000000-dmgd";
const LAST = 51;

function header(): HeaderRecord {
  return {
    type: "header",
    format: "lab-runlog",
    version: 2,
    id: ID,
    spec: validateRunSpec({ experiment: "shape-matters", replicas: 2, steps: 49, every: 1 }),
    code_version: "test",
    backend: "reference",
    adapter: "x",
    created: new Date(0).toISOString(),
    metrics: ["train_loss"],
    frames: [],
  };
}

/** running, snapshots of steps 1…49 (seq 2…50), finished (seq 51); each record's frame. */
async function writeLog(path: string) {
  const records: BodyRecord[] = [{ type: "status", seq: 1, time: 1, status: "running", step: 0 }];
  for (let seq = 2; seq < LAST; seq++) {
    records.push({
      type: "snapshot",
      seq,
      step: seq - 1,
      wall_ms: seq,
      time: 1000 + seq,
      metrics: { train_loss: Float32Array.of(seq, -seq) },
    });
  }
  records.push({ type: "status", seq: LAST, time: 2, status: "finished", step: LAST - 2 });
  const w = await RunLogWriter.create(path, header());
  const frames = new Map<number, number>();
  w.onAppend((placed) => placed.forEach((p) => frames.set(p.record.seq, p.offset)));
  w.appendSync(records);
  w.close();
  return frames;
}

/** Flips a byte inside the frame at `offset`, then puts the log's mtime back. */
async function damage(path: string, offset: number): Promise<void> {
  const { atime, mtime } = await Deno.stat(path);
  const file = await Deno.open(path, { read: true, write: true });
  await file.seek(offset + 9, Deno.SeekMode.Start);
  const b = new Uint8Array(1);
  await file.read(b);
  await file.seek(offset + 9, Deno.SeekMode.Start);
  await file.write(Uint8Array.of(b[0] ^ 0x55));
  file.close();
  await Deno.utime(path, atime!, mtime!);
}

Deno.test(
  "a late subscriber to a run whose log lost records and its final status is told both",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-test-" });
    await Deno.mkdir(`${dataDir}/runs`);
    const path = `${dataDir}/runs/${ID}.lablog`;
    const frames = await writeLog(path);
    const lab = await startTestLab({ dataDir, resume: false });
    try {
      assert.equal(lab.manager.status(ID), "finished");
      await damage(path, frames.get(20)!);
      await damage(path, frames.get(LAST)!);
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: [ID] });
      await waitFor(
        () => s.of("skipped").some((m) => m.to_seq === LAST),
        "the damaged final status announced",
      );
      const all = Array.from({ length: LAST }, (_, i) => i + 1);
      assert.deepEqual(s.seqs(ID), all.filter((seq) => seq !== 20 && seq !== LAST));
      assert.deepEqual(s.of("skipped"), [
        { type: "skipped", run: ID, from_seq: 20, to_seq: 20, reason: "damaged" },
        {
          type: "skipped",
          run: ID,
          from_seq: LAST,
          to_seq: LAST,
          reason: "damaged",
          status: "finished",
          step: LAST - 2,
        },
      ]);
      // The replay announced them in seq order, between the records around them.
      const order = s.messages.flatMap((m) =>
        m.type === "skipped" ? [m.from_seq] : "seq" in m ? [m.seq as number] : []
      );
      assert.deepEqual(order, all);
      // And the run's summary reports both (the reads met them).
      assert.equal(lab.manager.runSummary(ID)?.damaged?.records, 2);
      await s.close();
    } finally {
      await lab.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
