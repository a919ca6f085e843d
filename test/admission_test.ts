/**
 * Admission control: a bounded queue answers 429 with Retry-After and queued runs hold no
 * file descriptor, so a flood of submits under a low descriptor limit leaves the server
 * listening; a history request naming one metric thousands of times costs what naming it once
 * does; a run whose projected log exceeds the disk limit is refused with both numbers.
 */
import assert from "node:assert/strict";
import {
  RawStream,
  smallSpec,
  startServerProcess,
  startTestLab,
  submit,
  waitFor,
} from "./lab_harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "a queue flood under a low descriptor limit gets 429 + Retry-After and the server keeps listening",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-flood-" });
    const prlimit = "/usr/bin/prlimit";
    try {
      await Deno.stat(prlimit);
    } catch {
      throw new Error("this test needs prlimit (util-linux): apt-get install -y util-linux");
    }
    const { url, child } = await startServerProcess(
      dataDir,
      ["--max-queued=8", "--max-concurrent=wasm:1"],
      { wrapper: [prlimit, "--nofile=160:160"] },
    );
    try {
      const long = JSON.stringify(smallSpec({ steps: 50_000_000, every: 10_000 }));
      const codes: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 300; i++) {
        const res = await fetch(`${url}/api/runs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: long,
        });
        codes.push(res.status);
        const body = await res.json();
        if (res.status === 429) {
          retryAfter = res.headers.get("retry-after");
          assert.match(body.error, /queue is full \(8 runs waiting\)/);
        }
      }
      const accepted = codes.filter((c) => c === 201).length;
      assert.ok(accepted >= 9 && accepted <= 10, `accepted ${accepted}: one running, 8 queued`);
      assert.equal(codes.filter((c) => c === 429).length, 300 - accepted, String(codes));
      assert.ok(Number(retryAfter) > 0, `Retry-After ${retryAfter}`);
      // Queued runs hold no descriptor: only the running run's log is open in the data dir.
      const open: string[] = [];
      for (const e of Deno.readDirSync(`/proc/${child.pid}/fd`)) {
        try {
          const link = Deno.readLinkSync(`/proc/${child.pid}/fd/${e.name}`);
          if (link.startsWith(dataDir)) open.push(link);
        } catch { /* closed meanwhile */ }
      }
      assert.ok(open.length <= 2, `descriptors on the store: ${open.join(", ")}`);
      const health = await fetch(`${url}/api/health`);
      assert.equal(health.status, 200);
      assert.equal((await health.json()).runs_queued, 8);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* it has exited already (e.g. out of memory): its output says why */ }
      await child.status;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);

Deno.test(
  "a history request naming a metric 5000 times is answered as if it named it once",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: "*" });
      const id = await submit(lab.url, smallSpec({ steps: 3000, every: 5 }));
      await s.untilFinished(id);
      await s.send({
        type: "history",
        req: 1,
        run: id,
        buckets: 200,
        metrics: Array(5000).fill("train_loss"),
      });
      await s.send({ type: "history", req: 2, run: id, buckets: 200, metrics: ["train_loss"] });
      await waitFor(() => s.of("history").length === 2, "history replies");
      const [many, once] = [1, 2].map((req) => s.of("history").find((m) => m.req === req)!);
      assert.deepEqual(Object.keys(many.metrics), ["train_loss"]);
      assert.equal(many.buckets, once.buckets, "the repeats do not shrink the reply");
      assert.equal(many.buckets, 200);
      assert.deepEqual([...many.metrics.train_loss.max], [...once.metrics.train_loss.max]);
      await s.close();
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "a run whose projected log is over the disk limit is refused with the projection and the limit",
  opts,
  async () => {
    const lab = await startTestLab({ diskLimitBytes: 2 ** 20 });
    try {
      const res = await fetch(`${lab.url}/api/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(smallSpec({ steps: 1_000_000, every: 1 })),
      });
      assert.equal(res.status, 413);
      const body = await res.json();
      assert.match(
        body.error,
        /log would take about \d+(\.\d)? MiB of disk, more than the 1\.0 MiB limit/,
      );
      assert.equal(body.errors[0].field, "steps");
      assert.equal(lab.manager.ids().length, 0, "nothing was created");
      // A run that fits is accepted.
      const ok = await submit(lab.url, smallSpec({ steps: 1000, every: 10 }));
      assert.ok(lab.manager.has(ok));
    } finally {
      await lab.close();
    }
  },
);
