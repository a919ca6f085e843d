/**
 * The command line's small defects found by trying it as a new user (issue 12 item 4): help
 * for run and watch, a hint for `--lr 0.1`, "did you mean" for a misspelled flag, the run
 * options in the list of valid flags, clean numbers, a quiet end on a closed pipe, and a
 * failed run never shown as 100% done.
 */
import assert from "node:assert/strict";
import { formatTable } from "../server/cli/watch.ts";
import { formatProgress } from "../server/cli/progress.ts";
import { formatNumber, readableJson } from "../server/cli/numbers.ts";
import { ROOT, runLab } from "./lab_harness.ts";

const lab = runLab;

Deno.test("run --help, run EXPERIMENT --help and watch --help print help and exit 0", async () => {
  const run = await lab("run", "--help");
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /usage: deno task lab run EXPERIMENT/);
  assert.match(run.stdout, /--seeds/);
  assert.match(run.stdout, /^shape-matters\s/m);
  const exp = await lab("run", "shape-matters", "--help");
  assert.equal(exp.code, 0, exp.stderr);
  assert.match(exp.stdout, /--delta=1\n\s+noise level δ/);
  const watch = await lab("watch", "--help");
  assert.equal(watch.code, 0, watch.stderr);
  assert.match(watch.stdout, /usage: deno task lab watch/);
});

Deno.test("flag mistakes get one line with the fix: a value after a space, a typo, the valid flags", async () => {
  const space = await lab("run", "shape-matters", "--lr", "0.1");
  assert.equal(space.code, 2);
  assert.match(space.stderr, /^error: --lr needs a value: write --lr=0\.1 with "="/);
  const typo = await lab("run", "shape-matters", "--detla=1");
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown option --detla for shape-matters \(did you mean --delta\?\)/);
  for (const flag of ["--steps", "--replicas", "--every", "--seeds", "--name", "--tag"]) {
    assert.ok(typo.stderr.includes(flag), `${flag} listed: ${typo.stderr}`);
  }
  const runTypo = await lab("run", "shape-matters", "--stpes=10");
  assert.match(runTypo.stderr, /did you mean --steps\?/);
  assert.equal(runTypo.stderr.trim().split("\n").length, 1);
});

Deno.test("numbers print in short clean forms", () => {
  assert.equal(formatNumber(10000), "10000");
  assert.equal(formatNumber(0.1 * 0.1), "0.01");
  assert.equal(formatNumber(12.3456), "12.35");
  assert.equal(
    readableJson({ lr_scale: 0.1 * 0.1, step: 200000 }),
    '{"lr_scale":0.01,"step":200000}',
  );
  const line = formatProgress(
    {
      type: "snapshot",
      seq: 1,
      step: 10000,
      wall_ms: 1000,
      time: 0,
      metrics: { anneal_step: new Float32Array([10000, 10000]) },
    },
    {
      experiment: "x",
      params: {},
      replicas: 2,
      steps: 20000,
      every: 100,
      backend: "wasm",
    },
    1,
    ["anneal_step"],
  );
  assert.match(line, /anneal_step=10000$/);
  assert.doesNotMatch(line, /e\+/);
});

Deno.test("lab watch's table never shows a failed run as 100% done", () => {
  const row = {
    id: "shape-matters-x",
    experiment: "shape-matters",
    backend: "wasm",
    rate: 0,
  };
  const table = formatTable([
    { ...row, status: "failed", step: 2000, steps: 2000 },
    { ...row, id: "y", status: "finished", step: 2000, steps: 2000 },
    { ...row, id: "z", status: "failed", step: 0, steps: 0 },
  ]);
  const [failed, finished, empty] = table.trim().split("\n");
  assert.doesNotMatch(failed, /100\.0%/);
  assert.doesNotMatch(empty, /100\.0%/);
  assert.match(finished, /100\.0%/);
});

Deno.test("run --json piped into a reader that closes early ends quietly", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}server/cli/main.ts`,
      "run",
      "shape-matters",
      "--backend=wasm",
      "--d=20",
      "--n=10",
      "--steps=200000",
      "--every=10",
      "--json",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Read one line, then close the pipe as `head -1` does.
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await reader.cancel();
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
  ]);
  assert.match(text, /^\{"type":"snapshot"/);
  assert.equal(stderr, "", "nothing on stderr");
  assert.equal(status.code, 0);
});
