/**
 * `lab run --threads=N` as a user meets it: the same JSON Lines (snapshots, events, final
 * metrics) as one thread, the summary saying how many workers stepped the run, a run too small
 * to split on one, and one-line errors for a bad value or a remote run.
 */
import assert from "node:assert/strict";
import { runLab } from "./lab_harness.ts";

const lab = runLab;

/** JSON Lines without host times and run ids. */
function numbers(stdout: string) {
  return stdout.trim().split("\n").map((l) => {
    const { wall_ms: _w, id: _i, steps_per_second: _s, threads: _t, ...rest } = JSON.parse(l);
    return rest;
  });
}

const RUN = [
  "run",
  "shape-matters",
  "--backend=wasm",
  "--replicas=5",
  "--d=16",
  "--n=8",
  "--r=3",
  "--lr=0.01,0.02,0.015,10,0.005",
  "--steps=50",
  "--every=10",
  "--json",
];

Deno.test("lab run --threads=2 prints what --threads=1 prints, and says it used 2 workers", async () => {
  const one = await lab(...RUN, "--threads=1");
  const two = await lab(...RUN, "--threads=2");
  assert.equal(one.code, 0, one.stderr);
  assert.equal(two.code, 0, two.stderr);
  assert.match(one.stdout, /"replica_diverged"/);
  assert.deepStrictEqual(numbers(two.stdout), numbers(one.stdout));
  assert.equal(JSON.parse(two.stdout.trim().split("\n").at(-1)!).threads, 2);
  assert.equal(JSON.parse(one.stdout.trim().split("\n").at(-1)!).threads, 1);
  // Three replicas are too few for two workers (at least 2 each): one session.
  const small = await lab(
    ...RUN.filter((a) => !a.startsWith("--lr=") && !a.startsWith("--replicas=")),
    "--replicas=3",
    "--threads=2",
  );
  assert.equal(small.code, 0, small.stderr);
  assert.equal(JSON.parse(small.stdout.trim().split("\n").at(-1)!).threads, 1);
});

Deno.test("a bad --threads, or --threads with --server, is one line and status 2", async () => {
  for (
    const [args, pattern] of [
      [
        ["run", "shape-matters", "--threads=0"],
        /^error: --threads must be an integer in \[1, 1024\]/,
      ],
      [["run", "shape-matters", "--threads=two"], /^error: --threads must be an integer/],
      [
        ["run", "shape-matters", "--threads=2", "--server=http://127.0.0.1:1"],
        /^error: --threads is for local runs/,
      ],
    ] as Array<[string[], RegExp]>
  ) {
    const r = await lab(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});
