/**
 * A job's records form one deterministic sequence however often it is handed on
 * (server/cluster/job_recorder.ts), and a job message is checked before anything runs
 * (server/cluster/job_message.ts). No NATS needed: the recorder and parser alone.
 */
import assert from "node:assert/strict";
import { JobRecorder } from "../server/cluster/job_recorder.ts";
import { type JobMessage, parseJob, validateJobSpec } from "../server/cluster/job_message.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { type BodyRecord, expandSnapshots } from "../server/runs/records.ts";
import type { Unsequenced } from "../server/runs/recorder.ts";

const spec = validateRunSpec({ experiment: "shape-matters", replicas: 2, steps: 100, every: 10 });
const header = newRunHeader("r1", spec, "wasm", "test");
const snap = (step: number): Unsequenced<BodyRecord> => ({
  type: "snapshot",
  step,
  wall_ms: 0,
  time: 0,
  metrics: {},
});

function record(recorder: JobRecorder): BodyRecord[] {
  const out: BodyRecord[] = [];
  recorder.listen((rs) => out.push(...expandSnapshots(rs)));
  return out;
}

Deno.test("a continued job numbers its records as the first attempt did", () => {
  const first = new JobRecorder(header);
  const a = record(first);
  first.setStatus("running");
  first.emit([snap(0), snap(10)]);
  const ckpt = { seq: first.checkpointSeq, step: 10 };
  first.emit([snap(20)]);
  first.setStatus("interrupted"); // handed back: not part of the sequence
  assert.deepEqual(a.map((r) => [r.type, r.seq]), [
    ["status", 1],
    ["snapshot", 2],
    ["snapshot", 3],
    ["snapshot", 4],
  ]);
  const second = new JobRecorder(header, ckpt);
  const b = record(second);
  second.setStatus("running"); // a repeat of seq 1: not emitted
  second.emit([snap(20), snap(30)]);
  second.setStatus("finished");
  assert.deepEqual(b.map((r) => [r.type, r.seq]), [
    ["snapshot", 4],
    ["snapshot", 5],
    ["status", 6],
  ]);
});

Deno.test("a job handed back before its first snapshot continues after seq 1", () => {
  const second = new JobRecorder(header, { seq: 0, step: 0 });
  const b = record(second);
  second.setStatus("running");
  second.emit([snap(0)]);
  assert.deepEqual(b.map((r) => r.seq), [2]);
});

Deno.test("a job message needs a run id and shard numbers; its spec is checked as the API's", () => {
  const job = { v: 1, run: "run-1", shard: 0, shards: 2, first: 0, count: 2, spec };
  const bytes = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
  const ok = parseJob(bytes(job));
  assert.ok("job" in ok);
  assert.deepEqual(validateJobSpec(ok.job), spec);
  assert.match((parseJob(bytes({ ...job, run: "a.b" })) as { error: string }).error, /run id/);
  assert.match((parseJob(bytes({ ...job, shard: 2 })) as { error: string }).error, /below/);
  assert.match((parseJob(new Uint8Array([1, 2])) as { error: string }).error, /not JSON/);
  const bad = { ...job, spec: { ...spec, steps: -1 } } as JobMessage;
  assert.throws(() => validateJobSpec(bad), /steps/);
  assert.throws(() => validateJobSpec({ ...job, count: 3 } as JobMessage), /count says 3/);
  // A shard's replica offset is checked and kept.
  const sharded = validateJobSpec({ ...job, spec: { ...spec, firstReplica: 4 } } as JobMessage);
  assert.equal(sharded.firstReplica, 4);
  assert.throws(
    () => validateJobSpec({ ...job, spec: { ...spec, firstReplica: -1 } } as JobMessage),
    /firstReplica/,
  );
});
