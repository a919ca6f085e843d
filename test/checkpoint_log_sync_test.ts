/**
 * A checkpoint never points past what the disk holds: before the driver writes a checkpoint it
 * syncs the run log (fdatasync), after the last record the checkpoint accounts for. Checked on
 * a real run log and a short wasm run with checkpoints after every call: each save comes right
 * after a sync, with no record appended in between, and at that sync the log already holds the
 * checkpoint's seq.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { openSession } from "../server/engine/open.ts";
import { driveRun } from "../server/runs/driver.ts";
import { RunRecorder } from "../server/runs/recorder.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { readRunLog, RunLogWriter } from "../server/runs/runlog.ts";

await ensureWasm();

Deno.test("the run log is synced to disk before each checkpoint is written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lab-ckpt-sync-" });
  try {
    const spec = validateRunSpec({
      experiment: "shape-matters",
      backend: "wasm",
      replicas: 1,
      steps: 200,
      every: 10,
      params: { d: 20, n: 10 },
    });
    const session = await openSession(spec);
    const header = newRunHeader("sync-test", spec, session.backend, session.adapter);
    const path = join(dir, "sync-test.lablog");
    const log = await RunLogWriter.create(path, header);
    const recorder = new RunRecorder(header, log);
    /** What happened, in order: appends (last seq), syncs (the log's last seq then), saves. */
    const trail: { kind: "append" | "sync" | "save"; seq: number }[] = [];
    recorder.listen((records) => trail.push({ kind: "append", seq: records.at(-1)!.seq }));
    const sync = log.sync.bind(log);
    log.sync = async () => {
      trail.push({ kind: "sync", seq: recorder.lastSeq });
      await sync();
    };
    const result = await driveRun(session, spec, recorder, {
      chunkMs: 1,
      checkpoint: {
        intervalMs: 0, // after every call
        save: (c) => {
          trail.push({ kind: "save", seq: c.seq });
          return Promise.resolve();
        },
      },
    });
    await session.dispose();
    log.close();
    assert.equal(result.status, "finished");
    const saves = trail.flatMap((t, i) => (t.kind === "save" ? [i] : []));
    assert.ok(saves.length >= 3, `checkpoints written: ${saves.length}`);
    for (const i of saves) {
      const before = trail[i - 1];
      assert.equal(before?.kind, "sync", `checkpoint ${trail[i].seq} follows a sync of the log`);
      assert.ok(before.seq >= trail[i].seq, "the synced log holds the checkpoint's records");
    }
    // The log holds every record (the sync does not disturb appending).
    const stored = await readRunLog(path);
    assert.equal(stored.records.at(-1)!.seq, recorder.lastSeq);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
