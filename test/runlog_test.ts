/** The run log: round trip of every record kind, and nothing written is lost on a crash. */
import assert from "node:assert/strict";
import { parseRunLog, readRunLog, RunLogWriter } from "../server/runs/runlog.ts";
import type { HeaderRecord } from "../server/runs/records.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { recordsToCsv } from "../server/runs/export.ts";

function header(): HeaderRecord {
  return {
    type: "header",
    format: "lab-runlog",
    version: 1,
    id: "t-1",
    spec: validateRunSpec({ experiment: "shape-matters", replicas: 2 }),
    code_version: "test",
    backend: "reference",
    adapter: "x",
    created: new Date(0).toISOString(),
    metrics: ["train_loss", "test_error"],
    frames: ["v_sq"],
  };
}

Deno.test("records round-trip with typed arrays and non-finite values intact", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/a.lablog`;
  const w = await RunLogWriter.create(path, header());
  w.appendSync([
    {
      type: "snapshot",
      seq: 1,
      step: 0,
      wall_ms: 0,
      time: 1,
      metrics: {
        train_loss: new Float32Array([1.5, NaN]),
        test_error: new Float32Array([2, Infinity]),
      },
    },
    { type: "event", seq: 2, time: 2, event: { type: "replica_diverged", step: 7, replica: 1 } },
    {
      type: "frame",
      seq: 3,
      step: 7,
      time: 3,
      name: "v_sq",
      width: 2,
      values: new Float32Array([1, 2, 3, 4]),
    },
  ]);
  w.close();
  const log = await readRunLog(path);
  assert.equal(log.truncated, false);
  assert.equal(log.header.id, "t-1");
  assert.equal(log.records.length, 3);
  const snap = log.records[0];
  assert.ok(snap.type === "snapshot" && snap.metrics.train_loss instanceof Float32Array);
  assert.ok(snap.type === "snapshot" && Number.isNaN(snap.metrics.train_loss[1]));
  const frame = log.records[2];
  assert.ok(
    frame.type === "frame" && frame.values instanceof Float32Array && frame.values[3] === 4,
  );
  assert.equal(
    recordsToCsv(log.header, log.records),
    "step,wall_ms,replica,train_loss,test_error\n0,0.000,0,1.5,2\n0,0.000,1,NaN,Inf\n",
  );
});

Deno.test("a partial final record (crash mid-write) is ignored and everything before it is kept", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/b.lablog`;
  const w = await RunLogWriter.create(path, header());
  for (let i = 1; i <= 5; i++) {
    w.appendSync([{
      type: "snapshot",
      seq: i,
      step: i,
      wall_ms: i,
      time: i,
      metrics: { train_loss: new Float32Array([i]), test_error: new Float32Array([i]) },
    }]);
  }
  w.close();
  const bytes = await Deno.readFile(path);
  for (const cut of [1, 3, 4, 10]) {
    const log = parseRunLog(bytes.subarray(0, bytes.length - cut));
    assert.equal(log.truncated, true);
    assert.equal(log.records.length, 4, `cut ${cut}`);
  }
  assert.throws(() => parseRunLog(new TextEncoder().encode("hello world")), /not a lab run log/);
});

Deno.test("a log is never overwritten", async () => {
  const dir = await Deno.makeTempDir();
  const w = await RunLogWriter.create(`${dir}/c.lablog`, header());
  w.close();
  await assert.rejects(() => RunLogWriter.create(`${dir}/c.lablog`, header()));
});
