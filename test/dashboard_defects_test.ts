/**
 * Dashboard defects of issue 12 that pure functions decide (each test failed on the code
 * before its fix): run colours shown together must be distinguishable (OKLab ΔE, both themes,
 * no repeats past the palette); step-function metrics declare they are not smoothed and the
 * column store honours it; a log axis over less than a decade labels more than two ticks;
 * the form refuses non-numbers naming the field; the runs list filters by text and groups by
 * experiment, latest first; steps/s and ETA of a running run. (Drawn defects: see
 * dashboard_sweep_browser_test.ts.)
 */
import assert from "node:assert/strict";
import { deltaE } from "../client/dashboard/colours.ts";
import { PALETTES, runColour, type ThemeName } from "../client/dashboard/theme.ts";
import { RunSeries } from "../client/dashboard/series.ts";
import { filterLogSplits, logTicks } from "../client/dashboard/log_ticks.ts";
import { parseNumberField, parseTags } from "../client/dashboard/form.ts";
import {
  groupByExperiment,
  matchesFilter,
  rateText,
  type RunRow,
} from "../client/dashboard/runs_list.ts";
import { EXPERIMENTS } from "../server/experiments/registry.ts";
import type { MetricSpec } from "../server/experiments/schema.ts";

/** Smallest OKLab distance between any two of the colours. */
function minDistance(colours: string[]): { d: number; pair: [string, string] } {
  let best = { d: Infinity, pair: ["", ""] as [string, string] };
  for (let i = 0; i < colours.length; i++) {
    for (let j = 0; j < i; j++) {
      const d = deltaE(colours[i], colours[j]);
      if (d < best.d) best = { d, pair: [colours[i], colours[j]] };
    }
  }
  return best;
}

Deno.test("run colours: any two of the first 10 differ by ΔE_OK ≥ 0.1, of 24 by ≥ 0.07, both themes", () => {
  for (const theme of ["light", "dark"] as ThemeName[]) {
    const p = PALETTES[theme];
    const first10 = Array.from({ length: 10 }, (_, i) => runColour(i, p));
    const m10 = minDistance(first10);
    assert.ok(m10.d >= 0.1, `${theme}: ${m10.pair.join(" vs ")} ΔE ${m10.d.toFixed(3)}`);
    const first24 = Array.from({ length: 24 }, (_, i) => runColour(i, p));
    assert.equal(new Set(first24).size, 24, `${theme}: no colour repeats after 10 runs`);
    const m24 = minDistance(first24);
    assert.ok(m24.d >= 0.07, `${theme}: ${m24.pair.join(" vs ")} ΔE ${m24.d.toFixed(3)}`);
    // A run keeps its colour as more runs arrive.
    assert.equal(runColour(3, p), first24[3]);
  }
});

Deno.test("step-function metrics are declared unsmoothed and stay raw in the column store", () => {
  const metrics = new Map<string, MetricSpec>(
    Object.entries(EXPERIMENTS).flatMap(([id, e]) =>
      (e.metrics as MetricSpec[]).map((m) => [`${id}:${m.name}`, m] as const)
    ),
  );
  assert.equal(metrics.get("shape-matters:support_size")?.smooth, false, "a count");
  const lr = [...metrics].filter(([k]) => k.endsWith(":lr"));
  assert.ok(lr.length >= 1, "some experiment reports lr");
  for (const [k, m] of lr) assert.equal(m.smooth, false, `${k} is a step function`);
  assert.notEqual(metrics.get("shape-matters:test_error")?.smooth, false);

  const s = new RunSeries(["lr", "loss"], 1, 64, 64, { unsmoothed: new Set(["lr"]) });
  s.setSmoothing(0.9);
  for (let i = 0; i < 10; i++) {
    s.appendSnapshot(i, i, { lr: [i < 5 ? 0.1 : 0.01], loss: [i < 5 ? 0.1 : 0.01] });
  }
  const lrCols = s.cols.get("lr")!, lossCols = s.cols.get("loss")!;
  // lr drops from 0.1 to 0.01 in one step; the loss (smoothed) decays gradually.
  assert.ok(Math.abs(lrCols.smooth[5] - 0.01) < 1e-9, `lr ${lrCols.smooth[5]}`);
  assert.ok(lossCols.smooth[5] > 0.05, `loss ${lossCols.smooth[5]}`);
});

Deno.test("log axis ticks: 0.5–1 gets more than two labels; many decades get powers of ten", () => {
  const half = logTicks(0.5, 1);
  assert.ok(half.length > 2, `0.5–1: ${half}`);
  assert.deepEqual(half, [0.5, 0.6, 0.7, 0.8, 0.9, 1]);
  assert.deepEqual(logTicks(1e-6, 1), [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1]);
  assert.ok(logTicks(1e-30, 1).length <= 8, "at most about eight decade labels");
  // As a filter over uPlot's splits: splits outside the chosen set lose their label.
  assert.deepEqual(filterLogSplits([0.5, 0.6, 0.7, 0.8, 0.9, 1], 0.5, 1), [
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1,
  ]);
  assert.deepEqual(filterLogSplits([1, 2, 3, 10], 1, 1e6), [1, null, null, 10]);
});

Deno.test("form: non-numbers are refused naming the field; lists only where per replica", () => {
  const num = { kind: "number" as const, perReplica: true };
  assert.deepEqual(parseNumberField("lr", "abc", num), {
    ok: false,
    message: 'lr: "abc" is not a number',
  });
  assert.deepEqual(parseNumberField("lr", "0.1, x", num), {
    ok: false,
    message: 'lr: "x" is not a number',
  });
  assert.deepEqual(parseNumberField("lr", "", num), { ok: false, message: "lr: enter a number" });
  assert.deepEqual(parseNumberField("lr", " 0.1 ", num), { ok: true, value: 0.1 });
  assert.deepEqual(parseNumberField("lr", "0.1,0.2", num), { ok: true, value: [0.1, 0.2] });
  assert.equal(parseNumberField("tau", "1,2", { kind: "number" }).ok, false);
  assert.deepEqual(parseNumberField("steps", "1e3", { kind: "int" }), { ok: true, value: 1000 });
  assert.equal(parseNumberField("steps", "2.5", { kind: "int" }).ok, false);
  assert.deepEqual(parseTags(" a, b c ,, a"), ["a", "b c"]);
  // Ranges expand to lists (per-replica parameters only), evenly spaced or in log.
  assert.deepEqual(parseNumberField("lr", "1e-3..1e-1 ×3 log", num), {
    ok: true,
    value: [0.001, 0.01, 0.1],
  });
  assert.deepEqual(parseNumberField("delta", "0.5..2 x4", num), {
    ok: true,
    value: [0.5, 1, 1.5, 2],
  });
  assert.deepEqual(parseNumberField("lr", "0..1 ×3 log", num), {
    ok: false,
    message: "lr: a log range needs positive ends",
  });
  assert.equal(parseNumberField("tau", "1..2 ×2", { kind: "number" }).ok, false);
});

function row(id: string, experiment: string, created: string, extra: Partial<RunRow> = {}): RunRow {
  return {
    id,
    label: id,
    colour: "#000000",
    status: "finished",
    step: 0,
    steps: 100,
    backend: "wasm",
    adapter: "",
    spec: null,
    shown: true,
    experiment,
    created,
    ...extra,
  };
}

Deno.test("runs list: filters by experiment, status and text; groups latest experiment first", () => {
  const runs = [
    row("a", "pegr", "2026-01-01", { tags: ["baseline"] }),
    row("b", "shape-matters", "2026-01-02", { name: "δ sweep", status: "running" }),
    row("c", "pegr", "2026-01-03", { note: "σ_p grid" }),
  ];
  const f = (text: string, experiment = "", status = "") =>
    runs.filter((r) => matchesFilter(r, { text, experiment, status })).map((r) => r.id);
  assert.deepEqual(f(""), ["a", "b", "c"]);
  assert.deepEqual(f("baseline"), ["a"]);
  assert.deepEqual(f("Sweep"), ["b"], "case-insensitive, in the name");
  assert.deepEqual(f("grid σ_p"), ["c"], "every word, in the note");
  assert.deepEqual(f("", "pegr"), ["a", "c"]);
  assert.deepEqual(f("", "", "running"), ["b"]);
  assert.deepEqual(
    groupByExperiment(runs).map((g) => [g.experiment, g.runs.map((r) => r.id)]),
    [["pegr", ["a", "c"]], ["shape-matters", ["b"]]],
  );
});

Deno.test("runs list: steps/s and ETA from the series' recent rows", () => {
  const s = new RunSeries(["x"], 1);
  assert.equal(s.stepsPerSecond(), null);
  for (let i = 0; i <= 20; i++) s.appendSnapshot(i * 100, i * 50, { x: [0] });
  assert.equal(s.stepsPerSecond(), 2000);
  assert.equal(rateText(2000, 2000, 62000), "2k steps/s · ETA 30 s");
  assert.equal(rateText(null, 0, 10), "");
});
