/**
 * Memory independent of how much is stored: the server's RSS after 20 finished runs of 20k
 * snapshots each (every one exported as CSV and asked for history) stays within 150 MB of its
 * idle RSS. Finished runs keep no ring; reads stream from the log and its index.
 */
import assert from "node:assert/strict";
import { RawStream, smallSpec, startServerProcess, submit, waitFor } from "./lab_harness.ts";

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1]);
  return kb / 1024;
}

Deno.test(
  "server RSS after 20 finished runs of 20k snapshots stays within 150 MB of idle",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-mem-" });
    // A modest heap cap makes V8 collect garbage before RSS drifts up, so RSS measures what
    // is retained (the old store, holding parsed logs and rings, runs out of heap here).
    const { url, child } = await startServerProcess(dataDir, [], {
      denoFlags: ["--v8-flags=--max-old-space-size=192"],
    });
    try {
      const finished = (ids: string[]) =>
        waitFor(
          async () => {
            const runs = await (await fetch(`${url}/api/runs`)).json();
            const done = new Set(
              runs.filter((r: { status: string }) => r.status === "finished").map((
                r: { id: string },
              ) => r.id),
            );
            return ids.every((id) => done.has(id));
          },
          "runs finished",
          600_000,
          500,
        );
      // Every run read back: exported as CSV, and asked for history.
      const readBack = async (ids: string[]) => {
        for (const id of ids) {
          const res = await fetch(`${url}/api/runs/${id}/metrics.csv`);
          let rows = 0;
          for await (const chunk of res.body!) for (const b of chunk) if (b === 10) rows++;
          assert.equal(rows, 1 + 4 * 20_001, `CSV of ${id}`);
        }
        const h = new RawStream(url);
        for (const [i, id] of ids.entries()) {
          await h.send({ type: "history", req: i, run: id, buckets: 500 });
        }
        await waitFor(() => h.of("history").length === ids.length, "history replies", 120_000);
        assert.ok(h.of("history").every((m) => m.snapshots === 20_001));
        await h.close();
      };
      const run = () => submit(url, smallSpec({ steps: 20_000, every: 1 }));

      // Idle: one such run done and read back, so kernels, workers and the heap are warm.
      const warm = [await run()];
      await finished(warm);
      await readBack(warm);
      const idle = rssMb(child.pid);

      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push(await run());
      await finished(ids);
      const ran = rssMb(child.pid);
      await readBack(ids);
      const after = rssMb(child.pid);
      console.log(
        `RSS idle ${idle.toFixed(0)} MB, after 20 runs ${ran.toFixed(0)} MB, after reading them ${
          after.toFixed(0)
        } MB`,
      );
      assert.ok(
        Math.max(ran, after) - idle < 150,
        `RSS grew ${(Math.max(ran, after) - idle).toFixed(0)} MB (idle ${idle.toFixed(0)} MB)`,
      );
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* it has exited already (e.g. out of memory): its output says why */ }
      await child.status;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);
