/**
 * The headless CLI against a running lab: `lab run ... --server=URL` submits and follows the
 * run with the local output formats; `lab watch` shows progress; refusals are one line.
 */
import assert from "node:assert/strict";
import { ROOT, startTestLab, submit, waitFor } from "./lab_harness.ts";
import type { SnapshotRecord } from "../server/runs/records.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function lab(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server/cli/main.ts`, ...args],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const RUN = ["run", "shape-matters", "--d=20", "--n=10", "--replicas=4", "--backend=wasm"];

Deno.test(
  "lab run --server submits, follows and prints what a local run prints",
  opts,
  async () => {
    const token = "cli-token";
    const server = await startTestLab({ token, memoryLimitBytes: 2 ** 20 });
    try {
      const srv = `--server=${server.url}`;
      const json = await lab([...RUN, "--steps=20000", "--every=1000", srv, "--json"], {
        LAB_TOKEN: token,
      });
      assert.equal(json.code, 0, json.stderr);
      const lines = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
      const summary = lines.at(-1);
      assert.equal(summary.type, "summary");
      assert.equal(summary.status, "finished");
      assert.equal(summary.backend, "wasm");
      assert.equal(summary.step, 20000);
      assert.ok(summary.steps_per_second > 0);
      const snaps = lines.filter((l) => l.type === "snapshot");
      const logged = (await server.manager.allRecords(summary.id))
        .filter((r): r is SnapshotRecord => r.type === "snapshot");
      assert.deepEqual(snaps.map((s) => s.step), logged.map((s) => s.step));
      assert.deepEqual(snaps.at(-1).metrics.train_loss, [...logged.at(-1)!.metrics.train_loss]);
      assert.deepEqual(summary.metrics, snaps.at(-1).metrics);

      const text = await lab([...RUN, "--steps=5000", "--every=1000", srv, `--token=${token}`]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stderr, /^submitted shape-matters-\S+ to http:/);
      assert.match(text.stderr, /step 5000\/5000 \(100\.0%\)/);
      assert.match(text.stderr, /finished at step 5000 on wasm \(wasm-simd128/);

      const refusals: Array<[string[], Record<string, string>, RegExp]> = [
        [
          [...RUN, "--steps=10", srv],
          {},
          /^error: the lab refused: this lab requires a token.*LAB_TOKEN\)$/,
        ],
        [[...RUN, "--steps=10", srv, "--token=nope"], {}, /^error: the lab refused: wrong token/],
        [
          [...RUN, "--replicas=1000", "--d=1000", srv],
          { LAB_TOKEN: token },
          /^error: the lab refused: replicas: the run needs about .* of device memory/,
        ],
        [[...RUN, "--lr=99", srv], { LAB_TOKEN: token }, /^error: params\.lr: must be a number/],
      ];
      for (const [args, env, pattern] of refusals) {
        const r = await lab(args, env);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr.trim(), pattern);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
    } finally {
      await server.close();
    }
  },
);

Deno.test("lab watch follows one run to the end, or lists every run", opts, async () => {
  const server = await startTestLab();
  try {
    const srv = `--server=${server.url}`;
    const id = await submit(server.url, {
      experiment: "shape-matters",
      params: { d: 100, n: 40 },
      replicas: 16,
      // Long enough (about 3 s here) that `lab watch` attaches while it runs, however fast the
      // machine writes: at 40k steps it once finished before the watch asked (pipelined runs).
      steps: 300_000,
      every: 3000,
      backend: "wasm",
    });
    await waitFor(() => server.manager.status(id) === "running", "running");
    const one = await lab(["watch", id, srv]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`^${id}: shape-matters on wasm`));
    assert.match(one.stdout, /step \d+\/300000 .* steps\/s ETA/);
    assert.match(one.stdout, /finished at step 300000\n$/);

    const table = await lab(["watch", srv, "--once"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(
      table.stdout,
      new RegExp(`^${id}\\s+finished\\s+300000/300000\\s+100\\.0%\\s+wasm`),
    );

    const missing = await lab(["watch", "no-such-run", srv]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^error: no run no-such-run on http/);
    const away = await lab(["watch", "--server=http://127.0.0.1:9", "--once"]);
    assert.equal(away.code, 1);
    assert.match(away.stderr, /^error: cannot reach the lab at http:\/\/127\.0\.0\.1:9/);
  } finally {
    await server.close();
  }
});
