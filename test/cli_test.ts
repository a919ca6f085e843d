/**
 * The command line as a user meets it: catalog output from the schema, one-line errors with
 * status 2 for bad input, JSON Lines runs, the run log and its CSV export.
 */
import assert from "node:assert/strict";
import { runLab } from "./lab_harness.ts";

const lab = runLab;

Deno.test("lab list and lab show print the catalog from the schemas", async () => {
  const list = await lab("list");
  assert.equal(list.code, 0);
  assert.match(list.stdout, /^shape-matters\s+Shape Matters/m);
  const show = await lab("show", "shape-matters");
  assert.equal(show.code, 0);
  assert.match(show.stdout, /--d=100\n\s+dimension\n\s+allowed: an integer in \[1, 4096\]/);
  assert.match(
    show.stdout,
    /--lr_schedule=\[\] \(\[\[100000,0.1\],\[200000,0.1\]\] when algo=label-noise\)/,
  );
  assert.match(show.stdout, /test_error\s+‖v⊙v − v\*⊙v\*‖²/);
});

Deno.test("bad input exits with status 2 and one line naming the parameter, no stack trace", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["run", "shape-matters", "--lr=abc"], /^error: params\.lr: must be a number in \[1e-9, 10\]/],
    [
      ["run", "shape-matters", "--algo=adam"],
      /^error: params\.algo: must be one of gd, label-noise/,
    ],
    [["run", "shape-matters", "--replicas=0"], /^error: replicas: must be an integer/],
    [
      ["run", "shape-matters", "--frobnicate=1"],
      /^error: unknown option --frobnicate for shape-matters/,
    ],
    [["run", "nope"], /^error: experiment: unknown experiment "nope"/],
    [["show", "nope"], /^error: experiment: unknown experiment "nope"/],
    [["export", "/nonexistent.lablog"], /^error: no such file/],
  ];
  for (const [args, pattern] of cases) {
    const r = await lab(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, pattern, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

Deno.test("run --json prints one snapshot line per snapshot, then the summary; --out writes an exportable log", async () => {
  const dir = await Deno.makeTempDir();
  const r = await lab(
    "run",
    "shape-matters",
    "--algo=label-noise",
    "--d=20",
    "--n=10",
    "--r=2",
    "--replicas=2",
    "--steps=300",
    "--every=100",
    "--lr_schedule=[[200,0.1]]",
    "--backend=reference",
    "--json",
    `--out=${dir}`,
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const snaps = lines.filter((l) => l.type === "snapshot");
  assert.deepEqual(snaps.map((s) => s.step), [0, 100, 200, 300]);
  assert.equal(snaps[0].metrics.train_loss.length, 2);
  assert.ok(
    lines.some((l) => l.type === "event" && l.event.type === "lr_change" && l.event.step === 200),
  );
  const summary = lines.at(-1);
  assert.equal(summary.type, "summary");
  assert.equal(summary.experiment, "shape-matters");
  assert.equal(summary.backend, "reference");
  assert.equal(summary.step, 300);
  assert.deepEqual(summary.metrics.test_error, snaps.at(-1).metrics.test_error);
  assert.ok(summary.steps_per_second > 0);
  assert.equal(summary.spec.params.d, 20);
  // The log, and the store's rebuildable derived files beside it (docs/storage.md).
  const logs = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".lablog"));
  assert.equal(logs.length, 1);
  assert.ok(Deno.statSync(`${dir}/derived`).isDirectory);
  const csv = await lab("export", `${dir}/${logs[0]}`, "--format=csv");
  assert.equal(csv.code, 0, csv.stderr);
  const rows = csv.stdout.trim().split("\n");
  assert.equal(rows[0], "step,wall_ms,replica,train_loss,test_error,v_norm,support_size");
  assert.equal(rows.length, 1 + 4 * 2);
  const last = rows.at(-1)!.split(",");
  assert.equal(last[0], "300");
  assert.equal(Number(last[4]), snaps.at(-1).metrics.test_error[1]);
});
