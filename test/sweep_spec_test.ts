/**
 * The sweep spec: lists and ranges parse as docs/sweeps.md says, the grid × seeds expands in
 * the documented replica order, zipped parameters move together, seeds get their own data,
 * and grids over the replica or memory limit are refused with the count and the limit.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { SpecError } from "../server/experiments/schema.ts";
import { type FieldError } from "../server/experiments/schema.ts";
import { parseSweepValues, settingGroups } from "../server/experiments/sweep.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { recordsToCsv } from "../server/runs/export.ts";
import { RunManager } from "../server/runs/manager.ts";

function parsed(raw: unknown) {
  const errors: FieldError[] = [];
  const r = parseSweepValues(raw, "grid.x", errors);
  return { values: r?.values, log: r?.log, errors };
}

function specError(body: unknown): FieldError[] {
  try {
    validateRunSpec(body);
  } catch (e) {
    if (e instanceof SpecError) return e.errors;
    throw e;
  }
  assert.fail(`accepted ${JSON.stringify(body)}`);
}

Deno.test("lists and ranges parse; ranges include both ends and print cleanly", () => {
  assert.deepEqual(parsed("0.25,0.5,1,2").values, [0.25, 0.5, 1, 2]);
  assert.deepEqual(parsed([0.1, 0.2]).values, [0.1, 0.2]);
  assert.deepEqual(parsed("1e-3..1e-1:5:log"), {
    values: [0.001, 0.00316227766017, 0.01, 0.0316227766017, 0.1],
    log: true,
    errors: [],
  });
  // The same range as a form field would hold it.
  assert.deepEqual(parsed("1e-3..1e-1 x5 log").values, parsed("1e-3..1e-1:5:log").values);
  assert.deepEqual(parsed("0..1:5").values, [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(parsed("0.1..0.3:3:lin").values, [0.1, 0.2, 0.3]);
  for (const bad of ["0.1,abc", "1,,2", "0..1:5:log", null, { a: 1 }, []]) {
    const r = parsed(bad);
    assert.equal(r.values, undefined, JSON.stringify(bad));
    assert.equal(r.errors[0].field, "grid.x");
  }
});

Deno.test("grid × seeds expands outermost first, seeds innermost, one setting object per replica", () => {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    params: { algo: "label-noise" },
    grid: { delta: "0.25,0.5,1,2", lr: [0.005, 0.01] },
    seeds: 4,
  });
  assert.equal(spec.replicas, 4 * 2 * 4);
  const sweep = spec.sweep!;
  assert.deepEqual(sweep.params, ["delta", "lr"]);
  assert.equal(sweep.seeds, 4);
  assert.deepEqual(sweep.scale, { delta: "log", lr: "log" });
  assert.deepEqual(sweep.settings.slice(0, 5), [
    { delta: 0.25, lr: 0.005, seed: 0 },
    { delta: 0.25, lr: 0.005, seed: 1 },
    { delta: 0.25, lr: 0.005, seed: 2 },
    { delta: 0.25, lr: 0.005, seed: 3 },
    { delta: 0.25, lr: 0.01, seed: 0 },
  ]);
  // The per-replica arrays the kernels read agree with the settings, replica by replica.
  const lr = spec.params.lr as number[], delta = spec.params.delta as number[];
  sweep.settings.forEach((s, k) => assert.deepEqual([s.delta, s.lr], [delta[k], lr[k]]));
  assert.equal(settingGroups(sweep).length, 8);
  // Seeds vary the data: each replica draws its own data set unless shared is asked for.
  assert.equal(spec.params.data, "per-replica");
  const shared = validateRunSpec({
    experiment: "shape-matters",
    params: { data: "shared" },
    seeds: 3,
  });
  assert.equal(shared.params.data, "shared");
  assert.equal(shared.replicas, 3);
  // One seed: settings are compared on the same data (the default), as without a sweep.
  const one = validateRunSpec({ experiment: "shape-matters", grid: { lr: "0.01,0.02" } });
  assert.equal(one.params.data, "shared");
});

Deno.test("zipped parameters vary together as one axis", () => {
  const spec = validateRunSpec({
    experiment: "pegr",
    grid: { sigma_p: [0.1, 0.5, 1, 1.5], sigma0: [0.01, 0.01, 0.01, 0.001] },
    zip: [["sigma_p", "sigma0"]],
    seeds: 2,
  });
  assert.equal(spec.replicas, 8);
  assert.deepEqual(spec.sweep!.settings.at(-1), { sigma_p: 1.5, sigma0: 0.001, seed: 1 });
  assert.deepEqual(
    specError({
      experiment: "pegr",
      grid: { sigma_p: [0.1, 0.5], sigma0: [0.01] },
      zip: [["sigma_p", "sigma0"]],
    }).map((e) => e.field),
    ["zip"],
  );
});

Deno.test("bad sweeps are refused naming the field; over the replica limit with count and limit", () => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ grid: { lr: "0.01,abc" } }, "grid.lr", /"abc" is not a number/],
    [{ grid: { lr: "1e-3..1e3:3:log" } }, "grid.lr", /must be a number in \[1e-9, 10\].*got 1000/],
    [{ grid: { algo: "gd,label-noise" } }, "grid.algo", /cannot vary per replica/],
    [{ grid: { toString: "1,2" } }, "grid.toString", /unknown parameter/],
    [{ grid: { lr: "1,2" }, replicas: 5 }, "replicas", /the sweep has 2 replicas/],
    [{ grid: { lr: "1,2" }, params: { lr: 0.1 } }, "params.lr", /also swept/],
    [{ seeds: 0 }, "seeds", /integer in \[1, 65536\]/],
    [
      { grid: { lr: "1e-3..1:100", delta: "0..1:100" }, seeds: 7 },
      "grid",
      /the sweep has 70000 replicas \(10000 settings × 7 seeds\), over the limit of 65536/,
    ],
  ];
  for (const [extra, field, message] of cases) {
    const errors = specError({ experiment: "shape-matters", ...extra });
    const e = errors.find((e) => e.field === field);
    assert.ok(e, `${JSON.stringify(extra)}: ${JSON.stringify(errors)}`);
    assert.match(e.message, message);
  }
});

Deno.test("a sweep over the memory limit is refused with its replica count and the limit", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lab-sweep-" });
  const manager = await RunManager.open({ dataDir, memoryLimitBytes: 2 ** 20 });
  try {
    await assert.rejects(
      manager.submit({
        experiment: "shape-matters",
        params: { d: 1000, n: 1000 },
        grid: { lr: "0.001..0.01:10" },
        seeds: 20,
      }),
      /more than the 1\.0 MiB limit; lower replicas \(now 200: 10 settings × 20 seeds\)/,
    );
  } finally {
    await manager.shutdown();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("the header carries the sweep beside a plain spec, and CSV rows carry each replica's setting", () => {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    grid: { lr: "0.01,0.02" },
    seeds: 2,
  });
  const header = newRunHeader("shape-matters-x", spec, "wasm", "test");
  assert.deepEqual(header.sweep, spec.sweep);
  assert.equal("sweep" in header.spec, false);
  // The plain spec reproduces the same batch: its arrays are the grid's, replica by replica.
  assert.deepEqual(validateRunSpec(header.spec).params.lr, [0.01, 0.01, 0.02, 0.02]);
  const metrics = Object.fromEntries(header.metrics.map((m) => [m, new Float32Array(4).fill(1)]));
  const csv = recordsToCsv(header, [
    { type: "snapshot", seq: 1, step: 0, wall_ms: 0, time: 0, metrics },
  ]);
  const lines = csv.trim().split("\n");
  assert.equal(lines[0], `step,wall_ms,replica,lr,seed,${header.metrics.join(",")}`);
  assert.match(lines[1], /^0,0\.000,0,0\.01,0,1,/);
  assert.match(lines[4], /^0,0\.000,3,0\.02,1,1,/);
});

Deno.test("the PEGR σ_p presets are sweeps: each replica's σ_p (with its σ0) is its setting", async () => {
  const { PEGR_PAPER_SETTINGS, PEGR_THEORY_REGIME } = await import(
    "../server/experiments/pegr_presets.ts"
  );
  const { toDashboardPreset } = await import("../client/dashboard/presets_pegr.ts");
  const { presetSpecs } = await import("../client/dashboard/presets.ts");
  for (const preset of [PEGR_PAPER_SETTINGS, PEGR_THEORY_REGIME]) {
    for (const body of presetSpecs(toDashboardPreset(preset))) {
      const sweep = validateRunSpec(body).sweep;
      assert.ok(sweep, `${preset.id}: the dashboard starts a sweep`);
      assert.deepEqual(sweep.params, ["sigma_p", "sigma0"]);
      assert.deepEqual(sweep.settings.map((s) => [s.sigma_p, s.sigma0]), [
        [0.1, 0.01],
        [0.5, 0.01],
        [1, 0.01],
        [1.5, 0.001],
      ]);
    }
  }
});
