/**
 * A subscriber that stops reading must not slow the run it watches or any other subscriber.
 *
 * Two identical runs compute at the same time. Run B has, besides a normal subscriber,
 * a raw TCP WebSocket client that completes the handshake, subscribes and never reads: the
 * kernel's socket buffers fill (a few MB on loopback), then the server's bufferedAmount
 * passes the high-water mark. A third client pauses reading for a while and then drains.
 *
 * The paused client subscribes to every run before either is submitted: a subscription made
 * after a run has produced records replays them in full (a replay is never coalesced), and on
 * a loaded machine a late subscribe can find most of the run already done. Its pause (1.2 s
 * past the 1 s lag limit) is well inside the 6 s stall limit, so it is coalesced, never closed.
 *
 * What would fail: a server that waited on the stalled socket would stop run B's stream at the
 * point the buffers filled, so the normal subscriber would miss B's end; one that queued
 * records for it would show a stalled socket whose bufferedAmount grows with the run. The test
 * checks both: every record of both runs reaches the normal subscriber, and the stalled socket
 * never holds more than the high-water mark plus one burst of small messages. It also compares
 * the two runs' compute time, loosely (B under 2× A), as the issue asks.
 */
import assert from "node:assert/strict";
import {
  assertContiguous,
  RawStream,
  smallSpec,
  startTestLab,
  submit,
  waitFor,
} from "./lab_harness.ts";
import { TcpWsClient } from "./tcp_ws_client.ts";
import { CLOSE_STALLED } from "../client/protocol.ts";

Deno.test(
  "a stalled subscriber slows neither the run nor the other subscribers; a slow one gets skipped",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const lab = await startTestLab({
      maxConcurrent: { wasm: 2 },
      stream: { highWaterBytes: 256 * 1024, lowWaterBytes: 64 * 1024, stallLimitMs: 6000 },
    });
    const stalled = await TcpWsClient.connect(lab.port);
    const paused = await TcpWsClient.connect(lab.port);
    try {
      // 4000 snapshots of ~4 KB (256 replicas × 4 metrics × 4 bytes): about 16 MB, several
      // times what the kernel buffers of one loopback connection hold.
      const spec = smallSpec({ replicas: 256, steps: 40_000, every: 10 }, { d: 8, n: 4, r: 2 });
      const normal = new RawStream(lab.url);
      await normal.send({ type: "subscribe", runs: "*" });
      await paused.sendJson({ type: "subscribe", runs: "*" });
      // Messages are handled in order: the pong means the subscription is in place.
      await paused.sendJson({ type: "ping", req: 1 });
      await paused.readMessages((m) => m.type === "pong");
      const a = await submit(lab.url, spec);
      const b = await submit(lab.url, spec);
      await stalled.sendJson({ type: "subscribe", runs: [b] });

      // The paused client reads a little, stops until the server finds its socket full and a
      // further 1.2 s (past the 1 s lag limit), then drains.
      const pausedDone = (async () => {
        const first = await paused.readMessages((m) => m.type === "snapshot");
        const me = `127.0.0.1:${paused.conn.localAddr.port}`;
        await waitFor(
          () => lab.hub.sockets().some((s) => s.peer === me && s.congested_ms > 0 && s.behind > 0),
          "the paused socket to fill up",
        );
        await new Promise((r) => setTimeout(r, 1200));
        const finished = new Set<unknown>();
        const rest = await paused.readMessages((m) => {
          if (m.type === "status" && m.status === "finished") finished.add(m.run);
          return finished.size === 2;
        });
        return { messages: [...first.messages, ...rest.messages], close: rest.close };
      })();
      // If a check below fails, `finally` closes this socket under the read: the test must
      // report that failure, not this read's "Bad resource ID" as an uncaught error.
      pausedDone.catch(() => {});

      let sawCongestion = false;
      const stalledPeer = `127.0.0.1:${stalled.conn.localAddr.port}`;
      let stalledMaxBuffered = 0;
      await waitFor(
        () => {
          if (lab.hub.stats().congested > 0) sawCongestion = true;
          for (const s of lab.hub.sockets()) {
            if (s.peer === stalledPeer) {
              stalledMaxBuffered = Math.max(stalledMaxBuffered, s.buffered);
            }
          }
          return normal.finished(a) && normal.finished(b);
        },
        "both runs to finish",
        60_000,
        10,
      );
      assert.ok(sawCongestion, "the stalled socket went over the high-water mark during the run");

      // Nothing queued for the stalled socket beyond its own buffer: sending stops at the
      // high-water mark, overshooting by at most one record (~4 KB here) or one coalesced
      // burst of small messages.
      assert.ok(
        stalledMaxBuffered < 256 * 1024 + 64 * 1024,
        `the stalled socket held ${stalledMaxBuffered} bytes`,
      );
      // The run's speed did not drop (the issue asks for this check): the runs' own clocks,
      // both computed side by side under the same load. Twin runs agree within ~20% here
      // (0.82–1.21 measured, also with the CPU saturated); a run held back by its stalled
      // subscriber would stop dead and never finish. The bound is loose on purpose.
      const wall = (run: string) =>
        normal.of("snapshot").filter((s) => s.run === run).at(-1)!.wall_ms;
      const [wa, wb] = [wall(a), wall(b)];
      console.log(`run A ${wa.toFixed(0)} ms, run B (stalled subscriber) ${wb.toFixed(0)} ms`);
      assert.ok(wb < 2 * wa, `stalled run took ${wb.toFixed(0)} ms vs ${wa.toFixed(0)} ms`);

      // The normal subscriber got everything of both runs, nothing skipped.
      for (const run of [a, b]) {
        assertContiguous(normal.seqs(run));
        assert.equal(normal.seqs(run).length, lab.manager.lastSeq(run));
      }
      assert.equal(normal.of("skipped").length, 0);

      // The slow one: every seq either delivered or reported skipped, once, in order; it has
      // the final snapshot and the finished status.
      const pausedResult = await pausedDone;
      assert.equal(
        pausedResult.close,
        undefined,
        `paused subscriber closed: ${JSON.stringify(pausedResult.close)}`,
      );
      const got = pausedResult.messages;
      const skipped = got.filter((m) => m.type === "skipped");
      assert.ok(
        skipped.length > 0,
        `the paused subscriber was told what it skipped (got ${got.length} of ${
          lab.manager.lastSeq(a) + lab.manager.lastSeq(b)
        }; ${JSON.stringify(lab.hub.sockets())})`,
      );
      for (const run of [a, b]) {
        const covered: number[] = [];
        for (const m of got.filter((m) => m.run === run)) {
          if (m.type === "skipped") {
            assert.equal(m.reason, "slow_consumer");
            for (let s = m.from_seq as number; s <= (m.to_seq as number); s++) covered.push(s);
          } else if (typeof m.seq === "number") covered.push(m.seq);
        }
        assertContiguous(covered);
        assert.equal(covered.length, lab.manager.lastSeq(run));
        const lastSnap = got.filter((m) => m.run === run && m.type === "snapshot").at(-1)!;
        assert.equal(lastSnap.step, 40_000);
      }

      // The stalled one is closed with a reason once stuck past the limit. Its close frame sits
      // behind the data it never read; reading now drains the data and finds it.
      await waitFor(() => lab.hub.stats().stalled_closed >= 1, "stalled socket closed", 15_000);
      const drained = await stalled.readMessages(() => false);
      assert.equal(drained.close?.code, CLOSE_STALLED);
      assert.match(drained.close!.reason, /^stalled: \d+ bytes unread for over 6s$/);
      assert.ok(drained.messages.length < lab.manager.lastSeq(b), "it got only part of the run");
      await normal.close();
    } finally {
      stalled.close();
      paused.close();
      await lab.close();
    }
  },
);
