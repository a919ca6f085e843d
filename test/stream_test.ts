/**
 * The stream against a real server on a free port: several subscribers, late join, resume
 * after a reconnect without gaps or duplicates, history, CSV export equal to the streamed
 * values, and bad WebSocket input answered with errors on a socket that stays usable.
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
import { Subscriber } from "../client/subscriber.ts";
import type { SnapshotMessage } from "../client/protocol.ts";
import { wirePackr } from "../client/protocol.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** Minutes of compute: tests that need a run in flight stop it themselves. */
const LONG = smallSpec({ steps: 50_000_000, every: 100, replicas: 16 }, { d: 100, n: 40 });

Deno.test(
  "several subscribers get the same complete stream; a late one gets it too",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const a = new RawStream(lab.url);
      const b = new RawStream(lab.url);
      await a.send({ type: "subscribe", runs: "*" });
      await b.send({ type: "subscribe", runs: "*" });
      await a.send({ type: "ping", req: 1 });
      await waitFor(() => a.of("pong").length, "pong");
      const id = await submit(lab.url, smallSpec({ steps: 50_000, every: 50 }));
      await a.untilFinished(id);
      await b.untilFinished(id);
      const late = new RawStream(lab.url);
      await late.send({ type: "subscribe", runs: [id] });
      await late.untilFinished(id);

      const last = lab.manager.lastSeq(id);
      assert.ok(last > 1000, `a long stream (${last} records)`);
      for (const s of [a, b, late]) {
        const hello = s.of("hello").find((h) => h.run === id)!;
        assert.equal(hello.header.id, id);
        assert.deepEqual(hello.header.metrics, [
          "train_loss",
          "test_error",
          "v_norm",
          "support_size",
        ]);
        assert.equal(hello.header.backend, "wasm");
        // hello comes before any record of its run
        assert.ok(s.messages.indexOf(hello) < s.messages.findIndex((m) => "seq" in m));
        assertContiguous(s.seqs(id));
        assert.equal(s.seqs(id).length, last);
        assert.equal(s.of("skipped").length, 0);
      }
      const snap = a.of("snapshot").at(-1)!;
      assert.ok(snap.metrics.train_loss instanceof Float32Array, "typed arrays arrive typed");
      assert.equal(snap.metrics.train_loss.length, 4);
      assert.equal(snap.step, 50_000);
      const statuses = a.of("status").map((s) => s.status);
      assert.deepEqual(statuses, ["queued", "running", "finished"]);
      // Byte-identical records for every subscriber.
      assert.deepEqual(
        wirePackr.pack(a.messages.filter((m) => "seq" in m)),
        wirePackr.pack(late.messages.filter((m) => "seq" in m)),
      );
      await Promise.all([a.close(), b.close(), late.close()]);
    } finally {
      await lab.close();
    }
  },
);

Deno.test("a reconnect with since resumes exactly after the last seq seen", opts, async () => {
  const lab = await startTestLab();
  try {
    // A long run, stopped by the test once it has what it needs: always still going when the
    // subscriber disconnects and comes back.
    const id = await submit(lab.url, LONG);
    const first = new RawStream(lab.url);
    await first.send({ type: "subscribe", runs: [id] });
    await waitFor(() => first.seqs(id).length > 20, "some records");
    await first.close();
    const seen = first.seqs(id);
    const lastSeen = seen.at(-1)!;
    // Records keep coming while nobody listens.
    await waitFor(() => lab.manager.lastSeq(id) > lastSeen + 20, "progress while away");

    const second = new RawStream(lab.url);
    await second.send({ type: "subscribe", runs: [id], since: { [id]: lastSeen } });
    await waitFor(() => second.seqs(id).length > 40, "live records after the resume");
    await fetch(`${lab.url}/api/runs/${id}/stop`, { method: "POST" }).then((r) => r.body?.cancel());
    await second.untilFinished(id);
    const resumed = second.seqs(id);
    assert.equal(resumed[0], lastSeen + 1, "first record after resume is the next seq");
    assertContiguous([...seen, ...resumed]);
    assert.equal(seen.length + resumed.length, lab.manager.lastSeq(id));
    assert.equal(second.of("status").at(-1)!.status, "stopped");
    await second.close();
  } finally {
    await lab.close();
  }
});

Deno.test(
  "the client library reconnects after the server drops it and loses nothing",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const id = await submit(lab.url, LONG);
      const got: number[] = [];
      const states: string[] = [];
      let ended = false;
      const sub = new Subscriber({
        url: lab.url,
        runs: [id],
        minDelayMs: 50,
        onSnapshot: (m) => got.push(m.seq),
        onEvent: (m) => got.push(m.seq),
        onFrame: (m) => got.push(m.seq),
        onStatus: (m) => {
          got.push(m.seq);
          if (m.status === "stopped") ended = true;
        },
        onConnection: (s) => states.push(s),
      });
      await waitFor(() => got.length > 30, "some records");
      // Drop every socket server-side (as a proxy restart would), twice, while the run goes on.
      for (let i = 0; i < 2; i++) {
        const before = got.length;
        lab.hub.disconnectAll(1012, "test: service restart");
        await waitFor(() => states.filter((s) => s === "open").length >= i + 2, "reconnected");
        await waitFor(() => got.length > before + 10, "records after reconnecting");
      }
      assert.equal(lab.manager.status(id), "running");
      await fetch(`${lab.url}/api/runs/${id}/stop`, { method: "POST" }).then((r) =>
        r.body?.cancel()
      );
      await waitFor(() => ended, "run stopped");
      assertContiguous(got);
      assert.equal(got.length, lab.manager.lastSeq(id));
      sub.close();
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "history returns decimated min/max/last; CSV export equals the streamed values",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: "*", frames: false });
      const id = await submit(lab.url, smallSpec({ steps: 10_000, every: 100 }));
      await s.untilFinished(id);
      assert.equal(s.of("frame").length, 0, "frames: false");
      const snaps = s.of("snapshot") as SnapshotMessage[];
      assert.equal(snaps.length, 101);

      const res = await fetch(`${lab.url}/api/runs/${id}/metrics.csv`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type")!, /text\/csv/);
      const lines = (await res.text()).trim().split("\n");
      const cols = lines[0].split(",");
      assert.deepEqual(cols, [
        "step",
        "wall_ms",
        "replica",
        "train_loss",
        "test_error",
        "v_norm",
        "support_size",
      ]);
      assert.equal(lines.length - 1, snaps.length * 4);
      for (let i = 1; i < lines.length; i++) {
        const row = lines[i].split(",");
        const snap = snaps[Math.floor((i - 1) / 4)];
        const r = Number(row[2]);
        assert.equal(Number(row[0]), snap.step);
        assert.equal(Number(row[1]).toFixed(3), snap.wall_ms.toFixed(3));
        for (let k = 3; k < cols.length; k++) {
          const v = snap.metrics[cols[k]][r];
          // CSV writes each float32 exactly (as a double): rounding back gives the streamed value.
          assert.equal(Math.fround(Number(row[k])), v, `${cols[k]} at step ${snap.step}`);
        }
      }

      await s.send({ type: "history", req: 7, run: id, buckets: 10, metrics: ["train_loss"] });
      await s.send({ type: "history", req: 8, run: id, from_step: 1000, to_step: 2000 });
      await waitFor(() => s.of("history").length === 2, "history replies");
      const h = s.of("history").find((m) => m.req === 7)!;
      assert.deepEqual(Object.keys(h.metrics), ["train_loss"]);
      assert.ok(h.steps_from instanceof Float64Array);
      assert.equal(h.buckets, 10);
      assert.equal(h.snapshots, 101);
      for (let b = 0; b < h.buckets; b++) {
        const inBucket = snaps.filter((x) => x.step >= h.steps_from[b] && x.step <= h.steps_to[b]);
        for (let r = 0; r < 4; r++) {
          const vals = inBucket.map((x) => x.metrics.train_loss[r]);
          assert.equal(h.metrics.train_loss.min[b * 4 + r], Math.min(...vals));
          assert.equal(h.metrics.train_loss.max[b * 4 + r], Math.max(...vals));
          assert.equal(h.metrics.train_loss.last[b * 4 + r], vals.at(-1));
        }
      }
      const raw = s.of("history").find((m) => m.req === 8)!;
      assert.equal(raw.buckets, 11, "no buckets asked: one per snapshot in 1000..2000");
      assert.deepEqual([...raw.steps_from], Array.from({ length: 11 }, (_, i) => 1000 + 100 * i));
      await s.close();
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "bad WebSocket input gets an error naming the problem and the socket stays usable",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const s = new RawStream(lab.url);
      const cases: Array<[unknown, string, RegExp]> = [
        ["{not json", "malformed", /not valid JSON/],
        [new Uint8Array([0xc1, 0xff, 0x00]), "malformed", /not valid msgpack|must be an object/],
        ['"just a string"', "malformed", /must be an object with a string "type"/],
        [{ type: "frobnicate", req: 3 }, "unknown_type", /unknown message type "frobnicate"/],
        ["x".repeat(100_000), "too_large", /exceeds the 65536-byte limit/],
        [{ type: "subscribe", runs: 5 }, "bad_request", /runs: must be "\*" or an array/],
        [{ type: "subscribe", runs: ["nope-123"] }, "unknown_run", /no run with id "nope-123"/],
        [{ type: "history", req: 4, run: "nope-123" }, "unknown_run", /no run/],
        [{ type: "history", req: 5, run: "x", buckets: 0 }, "bad_request", /buckets: must be/],
        [wirePackr.pack({ type: "ping" }), "bad_request", /req: a number is required/],
      ];
      for (const [msg, code, pattern] of cases) {
        const before = s.of("error").length;
        await s.send(msg);
        const errors = await waitFor(
          () => s.of("error").length > before && s.of("error"),
          `error for ${String(msg).slice(0, 40)}`,
        );
        const e = errors.at(-1)!;
        assert.equal(e.code, code, e.message);
        assert.match(e.message, pattern);
      }
      const unknown = s.of("error").find((e) => e.code === "unknown_type")!;
      assert.equal(unknown.req, 3, "the request id is echoed when there is one");
      // Still usable: msgpack ping, and a real subscription.
      await s.send(wirePackr.pack({ type: "ping", req: 99 }));
      await waitFor(() => s.of("pong").some((p) => p.req === 99), "pong after errors");
      const id = await submit(lab.url, smallSpec({ steps: 1000 }));
      await s.send({ type: "subscribe", runs: [id] });
      await s.untilFinished(id);
      assertContiguous(s.seqs(id));
      await s.close();
    } finally {
      await lab.close();
    }
  },
);
