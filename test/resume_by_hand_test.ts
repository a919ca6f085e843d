/**
 * Resuming by hand: a run interrupted by a graceful shutdown (which checkpoints it) and left
 * interrupted by a restart with `resume: false` continues with POST /api/runs/:id/resume from
 * its checkpoint, to the same records as an uninterrupted run; runs that are not interrupted
 * or failed are refused with 409, unknown ones with 404. `lab resume LOG` does the same for a
 * run written by `lab run --out` and stopped with Ctrl-C.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, smallSpec, startTestLab, submit, waitFor } from "./lab_harness.ts";
import { readRunLog } from "../server/runs/runlog.ts";
import { readCheckpoint } from "../server/runs/checkpoints.ts";
import type { BodyRecord } from "../server/runs/records.ts";

const SPEC = smallSpec({ steps: 400_000, every: 4000 }, { d: 30, n: 12 });

/** Snapshot steps and metric bytes, events and frames: what must not change by resuming. */
function data(records: BodyRecord[]): string {
  return JSON.stringify(records.flatMap((r): unknown[] => {
    if (r.type === "snapshot") {
      return [[r.step, Object.values(r.metrics).map((m) => [...new Uint8Array(m.buffer)])]];
    }
    if (r.type === "frame") return [[r.step, r.name, [...new Uint8Array(r.values.buffer)]]];
    if (r.type === "event" && r.event.type !== "resumed") return [r.event];
    return [];
  }));
}

const post = (url: string) =>
  fetch(url, { method: "POST" }).then(async (r) => [r.status, await r.json()]);

Deno.test(
  "POST /api/runs/:id/resume continues an interrupted run from its checkpoint",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-resume-" });
    try {
      let lab = await startTestLab({ dataDir, checkpointIntervalMs: 60_000 });
      const id = await submit(lab.url, SPEC);
      await waitFor(() => lab.manager.step(id) >= 40_000, "progress");
      await lab.close(); // graceful: checkpoint, then interrupted
      const ckpt = await readCheckpoint(join(dataDir, "runs", `${id}.ckpt`));
      assert.ok(ckpt && ckpt.step > 0 && !ckpt.state.replay, "the shutdown wrote a checkpoint");

      lab = await startTestLab({ dataDir, resume: false });
      try {
        assert.equal(lab.manager.status(id), "interrupted");
        const [missing] = await post(`${lab.url}/api/runs/no-such-run/resume`);
        assert.equal(missing, 404);
        const [ok, body] = await post(`${lab.url}/api/runs/${id}/resume`);
        assert.equal(ok, 200, JSON.stringify(body));
        const fresh = await submit(lab.url, SPEC);
        await waitFor(
          () => lab.manager.status(id) === "finished" && lab.manager.status(fresh) === "finished",
          "both runs finished",
          60_000,
        );
        const [again, refusal] = await post(`${lab.url}/api/runs/${id}/resume`);
        assert.equal(again, 409);
        assert.match(refusal.error, /is finished: only interrupted or failed runs/);
        const resumed = await lab.manager.allRecords(id);
        const resumedEvent = resumed.find((r) => r.type === "event" && r.event.type === "resumed");
        assert.ok(resumedEvent?.type === "event" && resumedEvent.event.step === ckpt.step);
        assert.deepEqual(resumed.map((r) => r.seq), resumed.map((_, i) => i + 1));
        assert.equal(data(resumed), data(await lab.manager.allRecords(fresh)));
        // The store's derived files follow the resumed run's appends: its snapshot index is
        // as whole as the uninterrupted run's, so history and replay need no fallback scan.
        const snaps = (run: string) => Deno.stat(join(dataDir, "runs", "derived", `${run}.snaps`));
        assert.equal((await snaps(id)).size, (await snaps(fresh)).size, "index covers the resume");
        const q = { metrics: ["train_loss"], replicas: SPEC.replicas };
        assert.deepEqual(
          (await lab.manager.history(id, q))!.steps_to,
          (await lab.manager.history(fresh, q))!.steps_to,
        );
      } finally {
        await lab.close();
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test(
  "lab resume continues a run written with --out and interrupted with Ctrl-C",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const out = await Deno.makeTempDir({ prefix: "lab-resume-cli-" });
    const lab = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}server/cli/main.ts`, ...args],
        stdout: "piped",
        stderr: "piped",
      });
    const flags = [
      "--backend=wasm",
      "--d=30",
      "--n=12",
      "--replicas=4",
      "--steps=3000000",
      "--every=30000",
      "--quiet",
    ];
    try {
      const child = lab(["run", "shape-matters", ...flags, `--out=${out}`]).spawn();
      const logPath = await waitFor(async () => {
        for await (const f of Deno.readDir(out)) {
          if (f.name.endsWith(".lablog")) return join(out, f.name);
        }
      }, "the run log");
      await waitFor(async () => {
        // The file may exist a moment before its header is written.
        const log = await readRunLog(logPath).catch(() => null);
        return log && log.records.filter((r) => r.type === "snapshot").length >= 3;
      }, "some snapshots");
      child.kill("SIGINT");
      const first = await child.output();
      assert.equal(first.code, 130, new TextDecoder().decode(first.stderr));
      assert.match(new TextDecoder().decode(first.stderr), /resume with: deno task lab resume/);
      const ckpt = await readCheckpoint(logPath.replace(/\.lablog$/, ".ckpt"));
      assert.ok(ckpt, "Ctrl-C wrote a checkpoint");

      const second = await lab(["resume", logPath, "--quiet"]).output();
      assert.equal(second.code, 0, new TextDecoder().decode(second.stderr));
      const log = await readRunLog(logPath);
      const statuses = log.records.flatMap((r) => r.type === "status" ? [r.status] : []);
      assert.deepEqual(statuses, ["running", "interrupted", "queued", "running", "finished"]);
      assert.deepEqual(log.records.map((r) => r.seq), log.records.map((_, i) => i + 1));
      const snaps = log.records.flatMap((r) => r.type === "snapshot" ? [r.step] : []);
      assert.deepEqual(snaps, Array.from({ length: 101 }, (_, i) => i * 30_000));
      await assert.rejects(Deno.stat(logPath.replace(/\.lablog$/, ".ckpt")), "checkpoint removed");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
