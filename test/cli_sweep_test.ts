/**
 * Sweeps from the command line, local and on a lab (--server): lists and ranges of per-replica
 * parameters × --seeds become one batch whose `--json` summary has one `settings` object per
 * replica; --name and --tag reach the run (they were silently dropped before).
 */
import assert from "node:assert/strict";
import { runLab, startTestLab } from "./lab_harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const lab = runLab;

const summaryOf = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!);

Deno.test("lab run with a δ list and --seeds=3 ends with 12 settings, one per replica", async () => {
  const r = await lab(
    "run",
    "shape-matters",
    "--algo=label-noise",
    "--delta=0.25,0.5,1,2",
    "--seeds=3",
    "--steps=200",
    "--every=100",
    "--backend=wasm",
    "--json",
  );
  assert.equal(r.code, 0, r.stderr);
  const s = summaryOf(r.stdout);
  assert.equal(s.type, "summary");
  assert.equal(s.settings.length, 12);
  assert.deepEqual(s.settings[0], { delta: 0.25, seed: 0 });
  assert.deepEqual(s.settings[11], { delta: 2, seed: 2 });
  assert.deepEqual(s.sweep_params, ["delta"]);
  assert.equal(s.spec.replicas, 12);
  assert.equal(s.spec.params.data, "per-replica", "seeds draw their own data sets");
  assert.equal(s.metrics.test_error.length, 12);
});

Deno.test(
  "--name and --tag reach the run; a sweep submitted with --server reports its settings",
  opts,
  async () => {
    const local = await lab(
      "run",
      "shape-matters",
      "--steps=10",
      "--every=10",
      "--backend=wasm",
      "--json",
      "--name=foo",
      "--tag=a",
      "--tag=b",
    );
    assert.equal(local.code, 0, local.stderr);
    const s = summaryOf(local.stdout);
    assert.equal(s.name, "foo");
    assert.deepEqual(s.tags, ["a", "b"]);

    const server = await startTestLab();
    try {
      const r = await lab(
        "run",
        "shape-matters",
        "--d=20",
        "--n=10",
        "--lr=1e-3..1e-2:3:log",
        "--seeds=2",
        "--steps=200",
        "--every=100",
        "--backend=wasm",
        "--name=remote sweep",
        "--tag=x",
        "--json",
        `--server=${server.url}`,
      );
      assert.equal(r.code, 0, r.stderr);
      const rs = summaryOf(r.stdout);
      assert.equal(rs.settings.length, 6);
      assert.deepEqual(rs.settings[2], { lr: 0.00316227766017, seed: 0 });
      const [run] = await (await fetch(`${server.url}/api/runs`)).json();
      assert.equal(run.name, "remote sweep");
      assert.deepEqual(run.tags, ["x"]);
    } finally {
      await server.close();
    }
  },
);
