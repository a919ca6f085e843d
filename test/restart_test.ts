/**
 * Persistence across restarts of the real `server/main.ts` process on one data directory:
 * a finished run replays record for record as it streamed live; with --no-resume, a run in
 * flight when the server was killed (SIGKILL) or shut down (SIGTERM) comes back as
 * interrupted, with everything it had logged.
 */
import assert from "node:assert/strict";
import {
  assertContiguous,
  RawStream,
  type ServerProcess as Proc,
  smallSpec,
  startServerProcess,
  submit,
  waitFor,
} from "./lab_harness.ts";

/** These restarts check the behaviour without checkpoints (test/kill_resume_test.ts has them). */
const startServer = (dataDir: string) => startServerProcess(dataDir, ["--no-resume"]);
import { wirePackr } from "../client/protocol.ts";

const records = (s: RawStream, run: string) =>
  s.messages.filter((m) => "seq" in m && "run" in m && m.run === run);

Deno.test(
  "after a crash or a shutdown, finished runs replay identically and runs in flight are interrupted",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-restart-" });
    const procs: Proc[] = [];
    try {
      // 1. A finished run, streamed live; then a long run, killed mid-flight.
      let p = await startServer(dataDir);
      procs.push(p);
      const live = new RawStream(p.url);
      await live.send({ type: "subscribe", runs: "*" });
      const done = await submit(p.url, smallSpec({ steps: 20_000, every: 200 }));
      await live.untilFinished(done);
      const long = smallSpec({ steps: 5_000_000, every: 1000, replicas: 16 }, { d: 100, n: 40 });
      const killed = await submit(p.url, long);
      await waitFor(
        () => live.of("snapshot").filter((s) => s.run === killed).length >= 3,
        "progress",
      );
      p.child.kill("SIGKILL");
      await p.child.status;
      await live.close();
      const killedSeen = records(live, killed).length;

      // 2. Restart: the finished run replays equal to the live stream; the killed one is
      //    interrupted with all it had logged.
      p = await startServer(dataDir);
      procs.push(p);
      const runs = await (await fetch(`${p.url}/api/runs`)).json();
      const byId = Object.fromEntries(runs.map((r: { id: string }) => [r.id, r]));
      assert.equal(byId[done].status, "finished");
      assert.equal(byId[killed].status, "interrupted");
      assert.match(byId[killed].error, /server stopped while this run was in flight/);

      const replay = new RawStream(p.url);
      await replay.send({ type: "subscribe", runs: [done, killed] });
      await replay.untilFinished(done);
      await replay.untilFinished(killed);
      assert.deepEqual(
        wirePackr.pack(records(replay, done)),
        wirePackr.pack(records(live, done)),
        "full replay after restart equals the live stream, byte for byte",
      );
      const hello = replay.of("hello").find((h) => h.run === done)!;
      assert.equal(hello.status, "finished");
      const k = records(replay, killed);
      assertContiguous(k.map((r) => (r as { seq: number }).seq));
      assert.ok(k.length >= killedSeen, "nothing the killed server had streamed was lost");
      const lastK = k.at(-1)!;
      assert.equal(lastK.type, "status");
      assert.equal((lastK as { status: string }).status, "interrupted");
      await replay.close();

      // 3. A graceful shutdown (SIGTERM) marks a run in flight interrupted itself.
      const stopped = await submit(p.url, long);
      const w = new RawStream(p.url);
      await w.send({ type: "subscribe", runs: [stopped] });
      await waitFor(() => w.of("snapshot").length >= 2, "progress");
      p.child.kill("SIGTERM");
      assert.equal((await p.child.status).code, 0, p.output());
      await waitFor(() => w.closed, "socket closed by shutdown");
      assert.equal(w.closed!.code, 1001);
      assert.ok(w.finished(stopped), "subscribers saw the interrupted status before the close");

      p = await startServer(dataDir);
      procs.push(p);
      const detail = await (await fetch(`${p.url}/api/runs/${stopped}`)).json();
      assert.equal(detail.status, "interrupted");
      assert.match(detail.error, /server was shut down/);
      // Replays are stable across restarts too.
      const again = new RawStream(p.url);
      await again.send({ type: "subscribe", runs: [done] });
      await again.untilFinished(done);
      assert.deepEqual(wirePackr.pack(records(again, done)), wirePackr.pack(records(live, done)));
      await again.close();
    } finally {
      for (const p of procs) {
        try {
          p.child.kill("SIGKILL");
        } catch { /* already exited */ }
        await p.child.status;
      }
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
