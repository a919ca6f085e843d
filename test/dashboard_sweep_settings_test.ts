/**
 * Sweep settings in the dashboard's pure parts: replicas grouped into settings from the
 * header's `sweep` field (docs/sweeps.md; synthetic headers here) or, for runs without it,
 * from the spec's per-replica lists; labels and sequential, log-aware colours; the column
 * store summarising each setting over its own seeds only; and the sweep view's numbers
 * (final, at a step, best so far; lines over one parameter, a heatmap over two, its refusal
 * to average over a third, the CSV).
 */
import assert from "node:assert/strict";
import { RunSeries } from "../client/dashboard/series.ts";
import {
  axisPosition,
  runSettings,
  settingStyles,
  type SweepInfo,
} from "../client/dashboard/settings.ts";
import {
  sweepCsv,
  sweepHeatmap,
  sweepLines,
  sweepParams,
  sweepPoints,
  type SweepSource,
} from "../client/dashboard/sweep_data.ts";
import { deltaE, hexToOklab } from "../client/dashboard/colours.ts";
import { PALETTES } from "../client/dashboard/theme.ts";
import type { RunSpec } from "../server/experiments/types.ts";

/** δ ∈ {0.25, 1} × lr ∈ {0.01, 0.1} × 3 seeds, replica order: δ, lr, seed (grid order). */
function gridSweep(): SweepInfo {
  const settings: SweepInfo["settings"] = [];
  for (const delta of [0.25, 1]) {
    for (const lr of [0.01, 0.1]) {
      for (let seed = 0; seed < 3; seed++) settings.push({ delta, lr, seed });
    }
  }
  return {
    params: ["delta", "lr"],
    values: { delta: [0.25, 1], lr: [0.01, 0.1] },
    scale: { delta: "log", lr: "log" },
    seeds: 3,
    settings,
  };
}

const spec = (params: Record<string, unknown>, replicas: number): RunSpec =>
  ({
    experiment: "shape-matters",
    params,
    replicas,
    steps: 100,
    every: 10,
    backend: "wasm",
  }) as RunSpec;

Deno.test("sweep settings: the header's sweep groups replicas into settings with labels", () => {
  const rs = runSettings(spec({}, 12), gridSweep())!;
  assert.equal(rs.settings.length, 4);
  assert.deepEqual(rs.settings.map((s) => s.replicas), [[0, 1, 2], [3, 4, 5], [6, 7, 8], [
    9,
    10,
    11,
  ]]);
  assert.deepEqual(rs.settings.map((s) => s.label), [
    "δ=0.25 · lr=0.01",
    "δ=0.25 · lr=0.1",
    "δ=1 · lr=0.01",
    "δ=1 · lr=0.1",
  ]);
  assert.deepEqual(Array.from(rs.seedOf), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
  assert.deepEqual(Array.from(rs.settingOf), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
});

Deno.test("sweep settings: without a sweep field, per-replica lists that differ are settings", () => {
  const schema = { lr: { kind: "number", default: 0.01, min: 0, max: 1, log: true, doc: "" } };
  const rs = runSettings(
    spec({ algo: "label-noise", lr: [0.01, 0.01, 0.02, 0.02], delta: [1, 1, 1, 1] }, 4),
    null,
    // deno-lint-ignore no-explicit-any
    schema as any,
  )!;
  assert.deepEqual(rs.params, ["lr"], "a list of equal values is not swept");
  assert.deepEqual(rs.settings.map((s) => [s.label, s.replicas]), [
    ["lr=0.01", [0, 1]],
    ["lr=0.02", [2, 3]],
  ]);
  assert.equal(rs.scale.lr, "log");
  // A plain run (one value, or a schedule of pairs) has no settings: drawn as today.
  assert.equal(runSettings(spec({ lr: 0.01, lr_schedule: [[5, 0.1], [9, 0.1]] }, 2), null), null);
  assert.equal(runSettings(null, null), null);
});

Deno.test("sweep settings: a noise-pair run's halves are two settings, noise on and off", () => {
  // large-lr's noise_pairs=on: replicas R/2..R−1 repeat 0..R/2−1 without the noise.
  const plain = runSettings(spec({ noise_pairs: "on" }, 6), null)!;
  assert.deepEqual(plain.params, ["noise"]);
  assert.deepEqual(plain.settings.map((s) => [s.label, s.replicas]), [
    ["noise=on", [0, 1, 2]],
    ["noise=off", [3, 4, 5]],
  ]);
  assert.deepEqual(Array.from(plain.seedOf), [0, 1, 2, 0, 1, 2]);
  // With per-replica lists the pairs split each setting.
  const swept = runSettings(spec({ noise_pairs: "on", lr: [1, 2, 1, 2] }, 4), null)!;
  assert.deepEqual(swept.settings.map((s) => [s.label, s.replicas]), [
    ["lr=1 · noise=on", [0]],
    ["lr=2 · noise=on", [1]],
    ["lr=1 · noise=off", [2]],
    ["lr=2 · noise=off", [3]],
  ]);
  // Off, or an odd R (refused by the server), leaves the run as it was.
  assert.equal(runSettings(spec({ noise_pairs: "off" }, 6), null), null);
  assert.equal(runSettings(spec({ noise_pairs: "on" }, 5), null), null);
});

Deno.test("sweep settings: colours follow a swept parameter on a sequential, log-aware scale", () => {
  const rs = runSettings(spec({}, 12), gridSweep())!;
  // Log-aware: 0.01 → 0, 0.1 → 1, and √(0.01·0.1) is the middle.
  assert.equal(axisPosition(rs, "lr", 0.01), 0);
  assert.equal(axisPosition(rs, "lr", 0.1), 1);
  assert.ok(Math.abs(axisPosition(rs, "lr", Math.sqrt(0.001)) - 0.5) < 1e-12);
  for (const theme of ["light", "dark"] as const) {
    const styles = settingStyles(rs, PALETTES[theme]);
    // δ (first of the two, equal counts) sets the colour, lr the dash: 4 distinct styles.
    assert.equal(styles[0].colour, styles[1].colour);
    assert.notEqual(styles[0].colour, styles[2].colour);
    assert.deepEqual(styles[0].dash, []);
    assert.notDeepEqual(styles[1].dash, []);
    assert.ok(deltaE(styles[0].colour, styles[2].colour) > 0.1, `${theme}: far apart`);
    // Sequential: lightness changes monotonically along the parameter.
    assert.notEqual(hexToOklab(styles[0].colour)[0], hexToOklab(styles[2].colour)[0]);
  }
});

/** A series of the grid sweep whose replica r has value base(r) + step/100 at each step. */
function gridSeries(groups: number[][] | undefined, base: (r: number) => number): RunSeries {
  const s = new RunSeries(["test_error"], 12, 4096, 64, { groups });
  for (let step = 0; step <= 300; step += 100) {
    const v = Float32Array.from({ length: 12 }, (_, r) => base(r) + step / 100);
    s.appendSnapshot(step, step, { test_error: v });
  }
  return s;
}

Deno.test("per-setting columns: mean and band of each setting over its own seeds only", () => {
  const rs = runSettings(spec({}, 12), gridSweep())!;
  const s = gridSeries(rs.settings.map((x) => x.replicas), (r) => r);
  const cols = s.cols.get("test_error")!;
  const G = 4, last = s.n - 1;
  assert.equal(s.groupCount, G);
  for (let g = 0; g < G; g++) {
    // Seeds 3g, 3g+1, 3g+2 at step 300: values 3g+3, 3g+4, 3g+5.
    assert.equal(cols.mean[last * G + g], 3 * g + 4);
    assert.equal(cols.lo[last * G + g], 3 * g + 3);
    assert.equal(cols.hi[last * G + g], 3 * g + 5);
  }
  // Without groups: one line over all replicas, as before.
  const plain = gridSeries(undefined, (r) => r);
  assert.equal(plain.groupCount, 1);
  assert.equal(plain.cols.get("test_error")!.mean[plain.n - 1], 5.5 + 3);
});

function sources(): SweepSource[] {
  const rs = runSettings(spec({}, 12), gridSweep())!;
  // Value = δ·100 + lr·1000 + seed, minus the step/100 so "best" is the final one.
  const base = (r: number) => {
    const st = rs.settings[rs.settingOf[r]].values;
    return (st.delta as number) * 100 + (st.lr as number) * 1000 + rs.seedOf[r];
  };
  const series = new RunSeries(["test_error"], 12, 4096, 64, {
    groups: rs.settings.map((x) => x.replicas),
  });
  for (let step = 0; step <= 300; step += 100) {
    series.appendSnapshot(step, step, {
      test_error: Float32Array.from({ length: 12 }, (_, r) => base(r) + 3 - step / 100),
    });
  }
  return [{ run: "a", label: "a", algo: "label-noise", settings: rs, series }];
}

Deno.test("sweep view data: heatmap cells are each setting's mean over its seeds", () => {
  const points = sweepPoints(sources(), "test_error", "final", null);
  assert.equal(points.length, 12);
  assert.deepEqual(sweepParams(sources()), ["delta", "lr"], "algo does not vary");
  const hm = sweepHeatmap(points, "delta", "lr");
  assert.ok(typeof hm !== "string");
  assert.deepEqual(hm.xs, [0.25, 1]);
  assert.deepEqual(hm.ys, [0.01, 0.1]);
  for (const c of hm.cells) {
    const want = (c.x as number) * 100 + (c.y as number) * 1000 + 1; // seeds 0, 1, 2
    assert.ok(Math.abs(c.mean - want) < 1e-3, `${c.x},${c.y}: ${c.mean} vs ${want}`);
    assert.equal(c.seeds.length, 3);
  }
  // One parameter on x: one line per value of the other, points are settings.
  const lines = sweepLines(points, "delta");
  assert.deepEqual(lines.map((l) => l.label), ["lr=0.01", "lr=0.1"]);
  for (const l of lines) {
    assert.deepEqual(l.stats.map((s) => s.x), [0.25, 1]);
    for (const s of l.stats) assert.ok(Math.abs(s.hi - s.lo - 2) < 1e-3, "band over 3 seeds");
  }
});

Deno.test("sweep view data: lines of two runs with the same settings carry the runs' labels", () => {
  // Two runs of one sweep (e.g. two noise-pair runs of large-lr at different fixed settings):
  // the same swept values, so only the run tells their lines apart.
  const [a] = sources(), b = { ...a, run: "b-id", label: "τ0=1.5 · 73b1" };
  const lines = sweepLines(
    sweepPoints([{ ...a, run: "a-id", label: "τ0=0.01 · 51d8" }, b], "test_error", "final", null),
    "delta",
  );
  assert.deepEqual(lines.map((l) => l.label), [
    "lr=0.01 · τ0=0.01 · 51d8",
    "lr=0.1 · τ0=0.01 · 51d8",
    "lr=0.01 · τ0=1.5 · 73b1",
    "lr=0.1 · τ0=1.5 · 73b1",
  ]);
  const alone = sweepLines(sweepPoints([a, b], "test_error", "final", null), "lr");
  assert.equal(new Set(alone.map((l) => l.label)).size, alone.length, "no two lines alike");
});

Deno.test("sweep view data: at a step, best so far, and refusing to average a third parameter", () => {
  const src = sources();
  const at100 = sweepPoints(src, "test_error", "cursor", 150);
  assert.ok(at100.every((p) => p.step === 100), "the last row at or before the cursor");
  const fin = sweepPoints(src, "test_error", "final", null);
  const best = sweepPoints(src, "test_error", "best", null);
  best.forEach((p, i) => assert.ok(p.value <= fin[i].value));
  // A second run with another algorithm: algo becomes a (categorical) parameter, and a
  // δ × lr heatmap would average the two algorithms: refused with a message.
  const other = { ...sources()[0], run: "b", algo: "gd" };
  const both = sweepPoints([...src, other], "test_error", "final", null);
  assert.deepEqual(sweepParams([...src, other]), ["delta", "lr", "algo"]);
  const refused = sweepHeatmap(both, "delta", "lr");
  assert.equal(typeof refused, "string");
  assert.match(refused as string, /average over algo/);
  // CSV: a header naming every parameter, one row per replica.
  const csv = sweepCsv(fin, "test_error").trim().split("\n");
  assert.equal(csv[0], "run,delta,lr,algo,seed,replica,step,test_error");
  assert.equal(csv.length, 13);
  assert.deepEqual(csv[1].split(",").slice(0, 7), [
    "a",
    "0.25",
    "0.01",
    "label-noise",
    "0",
    "0",
    "300",
  ]);
});
