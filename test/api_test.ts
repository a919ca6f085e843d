/**
 * The HTTP API through Hono's app.request (no socket) and, for the stream's token check, a
 * real server: bad input gets a status and a body naming the field; the token guards every
 * endpoint but health; runs can be listed, inspected, stopped and deleted.
 */
import assert from "node:assert/strict";
import { createApp } from "../server/api/app.ts";
import { RunManager } from "../server/runs/manager.ts";
import { RawStream, smallSpec, startTestLab, submit, waitFor } from "./lab_harness.ts";
import type { Hono } from "hono";

const opts = { sanitizeOps: false, sanitizeResources: false };
const backends = () =>
  Promise.resolve({
    backends: { wasm: { available: true, adapter: "test", fallback: false } },
    default_backend: "wasm",
  });

async function withApp(
  token: string | undefined,
  fn: (app: Hono, manager: RunManager) => Promise<void>,
) {
  const dataDir = await Deno.makeTempDir({ prefix: "lab-api-" });
  const manager = await RunManager.open({ dataDir, memoryLimitBytes: 64 * 2 ** 20 });
  try {
    await fn(createApp({ manager, token, backends }), manager);
  } finally {
    await manager.shutdown();
    await Deno.remove(dataDir, { recursive: true });
  }
}

function post(app: Hono, path: string, body: string, headers: Record<string, string> = {}) {
  return app.request(path, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", ...headers },
  });
}

Deno.test(
  "bad run specs get 400/413 naming each field; the server keeps serving",
  opts,
  async () => {
    await withApp(undefined, async (app, manager) => {
      const cases: Array<[string, number, string, RegExp]> = [
        ["{not json", 400, "(body)", /malformed JSON/],
        ["[1,2]", 400, "(body)", /must be a JSON object/],
        [
          JSON.stringify({ experiment: "nope" }),
          400,
          "experiment",
          /unknown experiment "nope"; known: shape-matters/,
        ],
        [JSON.stringify({ params: {} }), 400, "experiment", /required; one of shape-matters/],
        [
          JSON.stringify({ experiment: "shape-matters", params: { lr: 50 } }),
          400,
          "params.lr",
          /must be a number in \[1e-9, 10\].*got 50/,
        ],
        [
          JSON.stringify({ experiment: "shape-matters", params: { d: 0.5 } }),
          400,
          "params.d",
          /must be an integer in \[1, 4096\]/,
        ],
        [
          JSON.stringify({ experiment: "shape-matters", steps: -1 }),
          400,
          "steps",
          /must be an integer/,
        ],
        [
          JSON.stringify({ experiment: "shape-matters", colour: "red" }),
          400,
          "colour",
          /unknown field/,
        ],
        [
          JSON.stringify({ experiment: "shape-matters", backend: "tpu" }),
          400,
          "backend",
          /must be one of auto, wasm, webgpu, reference/,
        ],
        // 64 MiB limit in this app: 4096 × 4096 data alone is 64 MiB of float32.
        [
          JSON.stringify({
            experiment: "shape-matters",
            params: { d: 4096, n: 4096 },
            replicas: 8,
          }),
          413,
          "replicas",
          /needs about 64\.\d MiB of device memory, more than the 64\.0 MiB limit; lower replicas \(now 8\)/,
        ],
      ];
      for (const [body, status, field, pattern] of cases) {
        const res = await post(app, "/api/runs", body);
        const json = await res.json();
        assert.equal(res.status, status, `${body}: ${JSON.stringify(json)}`);
        const e = json.errors.find((x: { field: string }) => x.field === field);
        assert.ok(e, `${body}: no error for ${field} in ${JSON.stringify(json.errors)}`);
        assert.match(e.message, pattern);
        assert.equal(typeof json.error, "string");
      }
      const several = await post(
        app,
        "/api/runs",
        JSON.stringify({
          experiment: "shape-matters",
          replicas: 0,
          params: { algo: "adam", tau: -1 },
        }),
      );
      assert.deepEqual(
        (await several.json()).errors.map((e: { field: string }) => e.field).sort(),
        ["params.algo", "params.tau", "replicas"],
        "every bad field is named at once",
      );
      const huge = await post(app, "/api/runs", JSON.stringify({ x: "y".repeat(2 * 2 ** 20) }));
      assert.equal(huge.status, 413);
      assert.equal(manager.ids().length, 0, "nothing was created by bad input");

      // Still serving, and a good spec works.
      const ok = await post(app, "/api/runs", JSON.stringify(smallSpec({ steps: 500 })));
      assert.equal(ok.status, 201);
      const { id } = await ok.json();
      assert.match(id, /^shape-matters-\d{8}-\d{6}-[0-9a-f]{6}$/);
    });
  },
);

Deno.test("runs are listed, detailed, exported, stopped and deleted", opts, async () => {
  await withApp(undefined, async (app, manager) => {
    const health = await (await app.request("/api/health")).json();
    assert.equal(health.ok, true);
    assert.equal(health.default_backend, "wasm");
    assert.match(health.version, /^\d+\.\d+\.\d+/);
    // The process's memory, for remote monitoring of long headless runs.
    assert.ok(health.memory.rss_mb > health.memory.heap_used_mb && health.memory.heap_used_mb > 0);

    const exps = await (await app.request("/api/experiments")).json();
    const sm = exps.find((e: { id: string }) => e.id === "shape-matters");
    assert.equal(sm.params.d.default, 100);
    assert.deepEqual(sm.metrics.map((m: { name: string }) => m.name), [
      "train_loss",
      "test_error",
      "v_norm",
      "support_size",
    ]);

    const short = (await (await post(app, "/api/runs", JSON.stringify(smallSpec()))).json()).id;
    const long = (await (await post(
      app,
      "/api/runs",
      JSON.stringify(smallSpec({ steps: 5_000_000, replicas: 16 }, { d: 100, n: 40 })),
    )).json()).id;
    await waitFor(() => manager.status(short) === "finished", "short run");
    await waitFor(() => manager.status(long) === "running" && manager.step(long) > 0, "long run");

    const list = await (await app.request("/api/runs")).json();
    assert.deepEqual(list.map((r: { id: string }) => r.id), [short, long]);
    assert.equal(list[0].status, "finished");
    assert.equal(list[0].progress, 1);
    assert.equal(list[0].spec.replicas, 4);

    const d = await (await app.request(`/api/runs/${short}`)).json();
    assert.equal(d.status, "finished");
    assert.equal(d.latest.step, 20_000);
    assert.equal(d.latest.metrics.train_loss.length, 4);
    assert.equal(d.spec.params.d, 20);
    assert.deepEqual(d.metrics, ["train_loss", "test_error", "v_norm", "support_size"]);

    const stop = await app.request(`/api/runs/${long}/stop`, { method: "POST" });
    assert.equal(stop.status, 200);
    await waitFor(() => manager.status(long) === "stopped", "stopped");
    const again = await app.request(`/api/runs/${long}/stop`, { method: "POST" });
    assert.equal(again.status, 409);
    assert.match((await again.json()).error, /already ended \(stopped\)/);

    const log = await app.request(`/api/runs/${short}/log`);
    assert.equal(log.status, 200);
    assert.ok((await log.arrayBuffer()).byteLength > 1000);

    const del = await app.request(`/api/runs/${short}`, { method: "DELETE" });
    assert.equal(del.status, 200);
    for (const path of [`/api/runs/${short}`, `/api/runs/${short}/metrics.csv`]) {
      const r = await app.request(path);
      assert.equal(r.status, 404);
      assert.match((await r.json()).error, /no run with id/);
    }
    assert.equal((await app.request(`/api/runs/${short}`, { method: "DELETE" })).status, 404);
    assert.equal((await app.request("/api/nothing")).status, 404);
  });
});

Deno.test(
  "with a token: 401 without it or with a wrong one; health stays readable",
  opts,
  async () => {
    await withApp("s3cret", async (app) => {
      const spec = JSON.stringify(smallSpec({ steps: 100 }));
      const guarded: Array<[string, string]> = [
        ["GET", "/api/runs"],
        ["GET", "/api/experiments"],
        ["POST", "/api/runs"],
        ["POST", "/api/runs/x/stop"],
        ["DELETE", "/api/runs/x"],
        ["GET", "/api/runs/x/metrics.csv"],
        ["GET", "/api/stream"],
      ];
      for (const [method, path] of guarded) {
        for (const headers of [{}, { authorization: "Bearer wrong" }] as Record<string, string>[]) {
          const res = await app.request(path, {
            method,
            headers,
            body: method === "POST" ? spec : undefined,
          });
          assert.equal(res.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
          assert.match((await res.json()).error, /token/);
        }
      }
      assert.equal((await app.request("/api/runs?token=wrong")).status, 401);
      assert.equal((await app.request("/api/health")).status, 200);
      const ok = await post(app, "/api/runs", spec, { authorization: "Bearer s3cret" });
      assert.equal(ok.status, 201);
      assert.equal((await app.request("/api/runs?token=s3cret")).status, 200);
    });
  },
);

Deno.test("with a token the WebSocket stream refuses to open without it", opts, async () => {
  const lab = await startTestLab({ token: "tok" });
  try {
    const ws = (token?: string) =>
      new Promise<string>((resolve) => {
        const s = new WebSocket(
          `${lab.url.replace("http", "ws")}/api/stream${token ? `?token=${token}` : ""}`,
        );
        s.onopen = () => {
          s.close();
          resolve("open");
        };
        s.onerror = () => resolve("refused");
      });
    assert.equal(await ws(), "refused");
    assert.equal(await ws("bad"), "refused");
    assert.equal(await ws("tok"), "open");
    const res = await fetch(`${lab.url}/api/stream`);
    assert.equal(res.status, 401);
    await res.body?.cancel();
  } finally {
    await lab.close();
  }
});

Deno.test(
  "a queued run can be stopped; deleting a running run tells subscribers",
  opts,
  async () => {
    const lab = await startTestLab({ maxConcurrent: { wasm: 1 } });
    try {
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: "*" });
      const long = smallSpec({ steps: 50_000_000, replicas: 16 }, { d: 100, n: 40 });
      const running = await submit(lab.url, long);
      const queued = await submit(lab.url, long);
      await waitFor(() => lab.manager.status(running) === "running", "first run running");
      assert.equal(lab.manager.status(queued), "queued", "one wasm run at a time");

      const stop = await fetch(`${lab.url}/api/runs/${queued}/stop`, { method: "POST" });
      assert.deepEqual(await stop.json(), { id: queued, status: "stopped" });
      await waitFor(() => s.finished(queued), "stopped on the stream");
      const statuses = s.of("status").filter((m) => m.run === queued).map((m) => m.status);
      assert.deepEqual(statuses, ["queued", "stopped"], "it never ran");

      const path = lab.manager.logPath(running)!;
      const del = await fetch(`${lab.url}/api/runs/${running}`, { method: "DELETE" });
      assert.equal(del.status, 200);
      await del.body?.cancel();
      await waitFor(() => s.of("removed").some((m) => m.run === running), "removed message");
      await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
      const runs = await (await fetch(`${lab.url}/api/runs`)).json();
      assert.deepEqual(runs.map((r: { id: string }) => r.id), [queued]);
      await waitFor(() => lab.manager.inFlight() === 0, "nothing left in flight");
      await s.close();
    } finally {
      await lab.close();
    }
  },
);
