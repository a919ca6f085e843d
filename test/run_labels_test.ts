/**
 * Runs can be named and tagged when started and renamed, retagged or annotated after the fact
 * (PATCH /api/runs/:id appends an `annotation` record, also to ended runs and across a
 * restart); the runs list is searchable by text, experiment and status; the stream's hello
 * carries the labels and a sweep's settings.
 */
import assert from "node:assert/strict";
import { RawStream, smallSpec, startTestLab, submit, waitFor } from "./lab_harness.ts";
import { readRunLog } from "../server/runs/runlog.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function call(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

Deno.test(
  "names, tags and notes: given, edited after the end, searched, kept over a restart",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-labels-" });
    let lab = await startTestLab({ dataDir });
    try {
      const a = await submit(
        lab.url,
        smallSpec({ steps: 200, every: 100, name: "baseline", tags: ["gd", "paper"] }),
      );
      const b = await submit(lab.url, smallSpec({ steps: 200, every: 100 }));
      const list = async (query = "") => (await call(lab.url, "GET", `/api/runs${query}`)).json;
      await waitFor(
        async () => (await list()).every((r: { status: string }) => r.status === "finished"),
        "both runs to finish",
      );
      const first = (await list()).find((r: { id: string }) => r.id === a);
      assert.equal(first.name, "baseline");
      assert.deepEqual(first.tags, ["gd", "paper"]);

      const watch = new RawStream(lab.url);
      await watch.send({ type: "subscribe", runs: [b], since: { [b]: -1 } });
      await waitFor(() => watch.of("hello").length > 0, "the hello");
      const patched = await call(lab.url, "PATCH", `/api/runs/${b}`, {
        name: "label noise",
        tags: ["sweep-1"],
        note: "δ too small?",
      });
      assert.equal(patched.status, 200, JSON.stringify(patched.json));
      assert.equal(patched.json.name, "label noise");
      assert.deepEqual(patched.json.tags, ["sweep-1"]);
      // Subscribers see the annotation live.
      await waitFor(
        () => watch.of("annotation" as never).length > 0,
        "the annotation on the stream",
      );
      await watch.close();

      const ids = (rows: { id: string }[]) => rows.map((r) => r.id).sort();
      assert.deepEqual(ids(await list("?q=noise")), [b]);
      assert.deepEqual(ids(await list("?q=PAPER")), [a]);
      assert.deepEqual(ids(await list("?q=label%20sweep-1")), [b]);
      assert.deepEqual(ids(await list("?experiment=shape-matters&status=finished")), [a, b].sort());
      assert.deepEqual(await list("?experiment=pegr"), []);
      assert.deepEqual(await list("?status=running,queued"), []);

      const bad = [
        [{ tags: "x" }, "tags"],
        [{ name: 5 }, "name"],
        [{ colour: "red" }, "colour"],
        [{}, "(body)"],
      ] as const;
      for (const [body, field] of bad) {
        const r = await call(lab.url, "PATCH", `/api/runs/${b}`, body);
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.ok(r.json.errors.some((e: { field: string }) => e.field === field));
      }
      assert.equal((await call(lab.url, "PATCH", "/api/runs/nope", { name: "x" })).status, 404);

      // The annotation is in the run's log, read back after a restart; an empty name clears it.
      const log = await readRunLog(`${dataDir}/runs/${b}.lablog`);
      assert.equal(log.records.at(-1)?.type, "annotation");
      await lab.close();
      lab = await startTestLab({ dataDir });
      const again = (await list()).find((r: { id: string }) => r.id === b);
      assert.equal(again.name, "label noise");
      assert.equal(again.note, "δ too small?");
      const cleared = await call(lab.url, "PATCH", `/api/runs/${b}`, { name: "" });
      assert.equal(cleared.json.name, undefined);
      assert.deepEqual(cleared.json.tags, ["sweep-1"], "fields not given stay");
    } finally {
      await lab.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test(
  "a sweep started over the API: its settings in the hello, the summary and the CSV",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const watch = new RawStream(lab.url);
      await watch.send({ type: "subscribe", runs: "*" });
      const id = await submit(lab.url, {
        experiment: "shape-matters",
        params: { d: 20, n: 10, algo: "label-noise" },
        grid: { delta: "0.5,1", lr: "0.005..0.01:2" },
        seeds: 2,
        steps: 200,
        every: 100,
        backend: "wasm",
        name: "δ × lr",
      });
      await watch.untilFinished(id);
      const hello = watch.of("hello").find((h) => h.run === id)!;
      assert.equal(hello.name, "δ × lr");
      assert.deepEqual(hello.sweep?.params, ["delta", "lr"]);
      assert.equal(hello.sweep?.settings.length, 8);
      assert.deepEqual(hello.header.sweep, hello.sweep);
      const summary = (await call(lab.url, "GET", "/api/runs")).json[0];
      assert.equal(summary.replicas ?? summary.spec.replicas, 8);
      assert.deepEqual(summary.sweep.settings[3], { delta: 0.5, lr: 0.01, seed: 1 });
      const csv = await (await fetch(`${lab.url}/api/runs/${id}/metrics.csv`)).text();
      const [head, ...rows] = csv.trim().split("\n");
      assert.match(head, /^step,wall_ms,replica,delta,lr,seed,train_loss,/);
      assert.match(rows[7], /^0,[\d.]+,7,1,0\.01,1,/);
      await watch.close();
    } finally {
      await lab.close();
    }
  },
);
