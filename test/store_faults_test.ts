/**
 * Faults end cleanly. A full disk during a run ends it `failed` with the cause in words and no
 * path; the stream's last status says the same; the log and the stream agree; no file
 * descriptor leaks; a submit on the full disk is refused without leaving a file; the server
 * keeps serving. A read-only data directory: every run is listed and served, new runs and
 * deletions get 503, and a refused deletion leaves the run listed.
 *
 * As root (CI) the full disk is a 2 MiB tmpfs; otherwise the run's log is swapped for a link
 * to /dev/full (every write: "No space left on device") while the run waits in the queue.
 */
import assert from "node:assert/strict";
import { RawStream, smallSpec, startTestLab, submit, waitFor } from "./lab_harness.ts";
import { parseRunLog, RunLogWriter } from "../server/runs/runlog.ts";
import type { BodyRecord } from "../server/runs/records.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { newRunHeader } from "../server/runs/header.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const isRoot = Deno.uid() === 0;

async function sh(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stderr: "piped", stdout: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** This process's descriptors open on the data directory's files (or on /dev/full). */
function storeFds(dataDir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const link = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (link.startsWith(dataDir) || link === "/dev/full") out.push(link);
    } catch { /* closed meanwhile */ }
  }
  return out;
}

Deno.test(
  "a full disk ends the run failed with the cause; log and stream agree; nothing leaks",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-full-" });
    if (isRoot) await sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dataDir);
    const lab = await startTestLab({ dataDir, maxConcurrent: { wasm: 1 } });
    try {
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: "*" });
      await s.send({ type: "ping", req: 1 });
      await waitFor(() => s.of("pong").length, "pong");

      let id: string;
      if (isRoot) {
        // About 250 bytes a snapshot: 100k snapshots cannot fit in 2 MiB.
        id = await submit(lab.url, smallSpec({ steps: 100_000, every: 1 }));
      } else {
        const blocker = await submit(lab.url, smallSpec({ steps: 50_000_000, every: 1000 }));
        await waitFor(() => lab.manager.status(blocker) === "running", "blocker running");
        id = await submit(lab.url, smallSpec({ steps: 100_000, every: 1 }));
        const path = lab.manager.logPath(id)!;
        await Deno.rename(path, path + ".moved");
        await Deno.symlink("/dev/full", path);
        await lab.manager.stop(blocker);
      }
      await s.untilFinished(id, 60_000);
      if (!isRoot) {
        // The disk "has space" again: put the log back (it holds the header and `queued`).
        const path = lab.manager.logPath(id)!;
        await Deno.remove(path);
        await Deno.rename(path + ".moved", path);
      }
      const statuses = s.of("status").filter((m) => m.run === id);
      const last = statuses.at(-1)!;
      assert.equal(last.status, "failed");
      assert.match(last.error ?? "", new RegExp(`^disk full while writing run ${id}$`));
      assert.equal(lab.manager.status(id), "failed");
      const summary = await (await fetch(`${lab.url}/api/runs/${id}`)).json();
      assert.equal(summary.status, "failed");
      assert.equal(summary.error, last.error);

      if (isRoot) {
        // Everything the stream delivered is in the log, in order, and nothing else is.
        const log = parseRunLog(await Deno.readFile(lab.manager.logPath(id)!));
        const streamed = s.messages.filter((m) =>
          "seq" in m && m.run === id
        ) as unknown as BodyRecord[];
        assert.ok(streamed.length > 100, `a long run (${streamed.length} records)`);
        assert.deepEqual(log.records.map((r) => r.seq), streamed.map((r) => r.seq));
        assert.equal(log.records.at(-1)!.type, "status");
        assert.equal(log.truncated, false);
        assert.equal(log.damage.length, 0);
        // A submit on the full disk is refused in words, and leaves no file behind.
        const names = [...Deno.readDirSync(`${dataDir}/runs`)].map((e) => e.name).sort();
        const res = await fetch(`${lab.url}/api/runs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(smallSpec({ steps: 100_000, every: 1 })),
        });
        const body = await res.json();
        if (res.status === 201) {
          // The header fitted: the run then fails at its first records instead.
          await s.untilFinished(body.id, 60_000);
          assert.equal(lab.manager.status(body.id), "failed");
        } else {
          assert.equal(res.status, 507, JSON.stringify(body));
          assert.match(body.error, /^disk full while writing run /);
          assert.ok(!body.error.includes(dataDir), "no path in the reply");
          const now = [...Deno.readDirSync(`${dataDir}/runs`)].map((e) => e.name).sort();
          assert.deepEqual(now, names, "no 0-byte log left");
        }
      }
      await waitFor(() => lab.manager.inFlight() === 0, "nothing in flight");
      // The run's log, its derived files and the refused submit hold no descriptor any more.
      await waitFor(() => storeFds(dataDir).length === 0, `no descriptor left open on the store`);
      const health = await fetch(`${lab.url}/api/health`);
      assert.equal(health.status, 200);
      assert.equal((await health.json()).runs_in_flight, 0);
      await s.close();
    } finally {
      await lab.close();
      if (isRoot) await sh("umount", dataDir);
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);

async function writeRun(runsDir: string, finished: boolean): Promise<string> {
  const spec = validateRunSpec(smallSpec({ steps: 300, every: 1 }));
  const id = `shape-matters-20260101-00000${finished ? 1 : 2}-abcd`;
  const w = await RunLogWriter.create(`${runsDir}/${id}.lablog`, {
    ...newRunHeader(id, spec, "wasm", "test"),
  });
  const records: BodyRecord[] = [{ type: "status", seq: 1, time: 1, status: "running", step: 0 }];
  for (let i = 0; i <= 300; i++) {
    records.push({
      type: "snapshot",
      seq: records.length + 1,
      step: i,
      wall_ms: i,
      time: 2,
      metrics: Object.fromEntries(
        ["train_loss", "test_loss", "tr_hess", "phase"].map((
          m,
        ) => [m, new Float32Array(4).fill(i)]),
      ),
    });
  }
  if (finished) {
    records.push({
      type: "status",
      seq: records.length + 1,
      time: 3,
      status: "finished",
      step: 300,
    });
  }
  w.appendSync(records);
  w.close();
  return id;
}

Deno.test(
  "a read-only data directory: every run listed and served; new runs and deletions get 503",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-ro-" });
    await Deno.mkdir(`${dataDir}/runs`);
    const done = await writeRun(`${dataDir}/runs`, true);
    const inFlight = await writeRun(`${dataDir}/runs`, false);
    if (isRoot) {
      await sh("mount", "--bind", dataDir, dataDir);
      await sh("mount", "-o", "remount,ro,bind", dataDir);
    } else await Deno.chmod(`${dataDir}/runs`, 0o555);
    const lab = await startTestLab({ dataDir });
    try {
      const runs = await (await fetch(`${lab.url}/api/runs`)).json();
      const byId = Object.fromEntries(runs.map((r: { id: string }) => [r.id, r]));
      assert.deepEqual(Object.keys(byId).sort(), [done, inFlight].sort());
      assert.equal(byId[done].status, "finished");
      assert.equal(byId[inFlight].status, "interrupted");
      const csv = await (await fetch(`${lab.url}/api/runs/${done}/metrics.csv`)).text();
      assert.equal(csv.trim().split("\n").length, 1 + 301 * 4);
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: [done] });
      await s.untilFinished(done);
      assert.equal(s.seqs(done).length, 303);
      await s.send({ type: "history", req: 1, run: done, buckets: 10 });
      await waitFor(() => s.of("history").length, "history");
      assert.equal(s.of("history")[0].snapshots, 301);
      await s.close();

      const post = await fetch(`${lab.url}/api/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(smallSpec()),
      });
      assert.equal(post.status, 503);
      assert.match((await post.json()).error, /read-only/);
      const del = await fetch(`${lab.url}/api/runs/${done}`, { method: "DELETE" });
      assert.equal(del.status, 503);
      const delBody = await del.json();
      assert.match(delBody.error, /read-only/);
      assert.ok(!delBody.error.includes(dataDir), "no path in the reply");
      const after = await (await fetch(`${lab.url}/api/runs`)).json();
      assert.equal(after.length, 2, "a refused deletion leaves the run listed");
    } finally {
      await lab.close();
      if (isRoot) await sh("umount", dataDir);
      else await Deno.chmod(`${dataDir}/runs`, 0o755);
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);
