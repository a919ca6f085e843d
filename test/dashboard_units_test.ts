/**
 * The dashboard's pure parts: causal debiased smoothing, pixel-width re-bucketing that keeps
 * spikes, the joined table uPlot draws, the column store, the URL state round trip, and the
 * themes (choice in the URL, palettes readable on their backgrounds, in step with style.css).
 * (The drawn page itself is tested in headless Chromium: dashboard_browser_test.ts.)
 */
import assert from "node:assert/strict";

const assertEquals = (a: unknown, b: unknown, msg?: string) => assert.deepStrictEqual(a, b, msg);
function assertAlmostEquals(a: number, b: number, eps: number): void {
  assert.ok(Math.abs(a - b) <= eps, `${a} is not within ${eps} of ${b}`);
}
import { DebiasedEma, smoothColumn } from "../client/dashboard/smoothing.ts";
import { bucketGroup, joinGroups } from "../client/dashboard/chart_data.ts";
import { RunSeries } from "../client/dashboard/series.ts";
import { defaultState, stateFromQuery, stateToQuery } from "../client/dashboard/state.ts";
import { presets, presetSpecs } from "../client/dashboard/presets.ts";
import { phaseTracks, switchOffStep } from "../client/dashboard/panels/pegr.ts";
import { type Box, claimLabelBox } from "../client/dashboard/panels/canvas.ts";
import {
  contrast,
  mixHex,
  PALETTES,
  resolveTheme,
  runColour,
  type ThemeName,
} from "../client/dashboard/theme.ts";

Deno.test("debiased EMA: first point equals the input, constants stay constant", () => {
  const ema = new DebiasedEma(0.9);
  assertAlmostEquals(ema.push(5), 5, 1e-12);
  for (let i = 0; i < 50; i++) assertAlmostEquals(ema.push(5), 5, 1e-12);
});

Deno.test("debiased EMA: matches the closed form and is causal", () => {
  const beta = 0.8;
  const xs = [3, 1, 4, 1, 5, 9, 2, 6];
  const out = smoothColumn(xs, beta);
  for (let t = 1; t <= xs.length; t++) {
    let s = 0;
    for (let k = 1; k <= t; k++) s += (1 - beta) * beta ** (t - k) * xs[k - 1];
    assertAlmostEquals(out[t - 1], s / (1 - beta ** t), 1e-12);
  }
  // Appending more data never changes an earlier smoothed point.
  const longer = smoothColumn([...xs, 100, -100], beta);
  assertEquals(Array.from(longer.subarray(0, xs.length)), Array.from(out));
  // β = 0 is the raw curve; non-finite inputs give gaps and leave the state alone.
  assertEquals(Array.from(smoothColumn(xs, 0)), xs);
  const gap = smoothColumn([1, NaN, 1], 0.5);
  assert.ok(Number.isNaN(gap[1]));
  assertAlmostEquals(gap[2], 1, 1e-12);
});

Deno.test("re-bucketing keeps a spike in the max band and stays near the bucket count", () => {
  const n = 10000;
  const x = Float64Array.from({ length: n }, (_, i) => i);
  const y = Float64Array.from({ length: n }, (_, i) => (i === 4321 ? 1000 : Math.sin(i / 100)));
  const b = bucketGroup({
    x,
    n,
    ys: [{ values: y, agg: "min" }, { values: y, agg: "max" }, { values: y, agg: "last" }],
  }, { min: null, max: null, buckets: 300, log: false });
  assert.ok(b.x.length <= 302 && b.x.length >= 290, `got ${b.x.length} points`);
  assertEquals(Math.max(...b.ys[1]), 1000);
  assert.ok(Math.max(...b.ys[2]) < 2, "the last-value line does not carry the spike");
  // A zoomed window: only rows inside it (plus one neighbour each side).
  const z = bucketGroup({ x, n, ys: [{ values: y, agg: "last" }] }, {
    min: 100,
    max: 200,
    buckets: 300,
    log: false,
  });
  assertEquals(z.x[0], 99);
  assertEquals(z.x[z.x.length - 1], 201);
  // Log x drops x ≤ 0.
  const l = bucketGroup({ x, n: 5, ys: [{ values: y, agg: "last" }] }, {
    min: null,
    max: null,
    buckets: 100,
    log: true,
  });
  assertEquals(Array.from(l.x), [1, 2, 3, 4]);
});

Deno.test("joining runs on the union of x: undefined spans, null is a gap", () => {
  const a = { x: Float64Array.from([0, 10, 20]), ys: [Float64Array.from([1, NaN, 3])] };
  const b = { x: Float64Array.from([5, 10]), ys: [Float64Array.from([-1, 2])] };
  const [x, ya, yb] = joinGroups([a, b], false);
  assertEquals(Array.from(x), [0, 5, 10, 20]);
  assertEquals(ya, [1, undefined, null, 3]);
  assertEquals(yb, [undefined, -1, 2, undefined]);
  const [, , ybLog] = joinGroups([a, b], true);
  assertEquals(ybLog, [undefined, null, 2, undefined]);
});

Deno.test("column store: replica summary, smoothing, bounded memory", () => {
  const s = new RunSeries(["loss"], 3, 64, 4);
  s.setSmoothing(0.5);
  s.appendSnapshot(0, 0, { loss: Float32Array.from([1, 2, NaN]) });
  s.appendSnapshot(10, 5, { loss: Float32Array.from([3, 5, 4]) });
  assert.ok(
    !s.appendSnapshot(10, 6, { loss: Float32Array.from([0, 0, 0]) }),
    "repeat step ignored",
  );
  const c = s.cols.get("loss")!;
  assertEquals([c.mean[0], c.lo[0], c.hi[0]], [1.5, 1, 2]);
  assertEquals([c.mean[1], c.lo[1], c.hi[1]], [4, 3, 5]);
  assertAlmostEquals(c.smooth[1], (0.25 * 1.5 + 0.5 * 4) / 0.75, 1e-12);
  assertEquals(s.wallAt(5), 2.5);
  for (let i = 2; i < 500; i++) {
    s.appendSnapshot(i * 10, i, { loss: Float32Array.from([i, i === 77 ? 1e6 : i, i]) });
  }
  assert.ok(s.n <= 64, `rows bounded, got ${s.n}`);
  let hi = 0;
  for (let i = 0; i < s.n; i++) hi = Math.max(hi, c.hi[i]);
  assertEquals(hi, 1e6, "merged buckets keep the spike");
  assertEquals(s.step[s.n - 1], 4990);
});

Deno.test("view state survives the URL round trip", () => {
  const s = {
    ...defaultState(),
    runs: ["shape-matters-20250101-000000-abcdef", "b"],
    metrics: ["test_error", "train_loss"],
    ylog: { test_error: true, v_norm: false },
    x: "wall" as const,
    xlog: true,
    smoothing: 0.85,
    replicas: true,
    zoom: [10, 2000] as [number, number],
    theme: "dark" as const,
  };
  const q = stateToQuery(s);
  assert.ok(q.includes("theme=dark"), q);
  assert.ok(q.includes("runs=shape-matters-20250101-000000-abcdef,b"), q);
  assertEquals(stateFromQuery(q), s);
  assertEquals(stateToQuery(defaultState()), "");
  assertEquals(stateFromQuery(""), defaultState());
});

Deno.test("the Shape Matters preset: four algorithms, same data seed, 4 replicas", () => {
  const p = presets().find((x) => x.experiment === "shape-matters")!;
  assert.ok(p.title.startsWith("Shape Matters, Fig. 1 (right)"));
  const specs = presetSpecs(p, { steps: 20000, backend: "wasm" });
  assertEquals(specs.map((s) => (s.params as { algo: string }).algo), [
    "gd",
    "label-noise",
    "minibatch-noise",
    "gaussian",
  ]);
  assertEquals(new Set(specs.map((s) => (s.params as { seed: number }).seed)).size, 1);
  for (const s of specs) {
    assertEquals([s.replicas, s.steps, s.backend], [4, 20000, "wasm"]);
  }
  assertEquals(presetSpecs(p)[0].steps, 300000);
});

Deno.test("a series rebuilt from a history answer keeps appending live snapshots", () => {
  const R = 2;
  const h = {
    steps_from: Float64Array.from([0, 100, 300]),
    steps_to: Float64Array.from([0, 200, 400]),
    last_step: Float64Array.from([0, 200, 400]),
    metrics: {
      loss: {
        min: Float32Array.from([5, 5, 1, 2, 0.5, 0.5]),
        max: Float32Array.from([5, 5, 9, 3, 1, 1]),
        last: Float32Array.from([5, 5, 2, 3, 0.5, 1]),
      },
    },
  };
  const s = RunSeries.fromHistory(["loss"], R, h, (step) => step / 10, 64);
  const c = s.cols.get("loss")!;
  assertEquals([s.n, s.wall[2], c.mean[1], c.lo[1], c.hi[1]], [3, 40, 2.5, 1, 9]);
  assert.ok(s.appendSnapshot(500, 50, { loss: Float32Array.from([0.25, 0.75]) }));
  assert.ok(!s.appendSnapshot(400, 40, { loss: Float32Array.from([0, 0]) }));
  s.setSmoothing(0, true);
  assertEquals(Array.from(c.smooth.subarray(0, s.n)), [5, 2.5, 0.75, 0.5]);
});

Deno.test("pegr phase plane: log10 coordinates per replica, floored, NaN gaps kept", () => {
  const s = new RunSeries(["signal", "noise"], 2, 64, 4);
  s.appendSnapshot(0, 0, { signal: [1e-2, 1e-2], noise: [1e-3, 1e-3] });
  s.appendSnapshot(50, 5, { signal: [1e-1, 1e-2], noise: [1e-9, 1] });
  s.appendSnapshot(100, 10, { signal: [10, NaN], noise: [-0.5, Infinity] });
  const [a, b] = phaseTracks(s);
  assertEquals(Array.from(a.step), [0, 50, 100]);
  // x = noise, y = signal; ≤ 1e-6 (negative included) drawn at 1e-6.
  const near = (xs: Float64Array, want: number[]) =>
    want.forEach((w, i) =>
      Number.isNaN(w) ? assert.ok(Number.isNaN(xs[i])) : assertAlmostEquals(xs[i], w, 1e-6)
    );
  near(a.x, [-3, -6, -6]);
  near(a.y, [-2, -1, 1]);
  near(b.x, [-3, 0, NaN]);
  near(b.y, [-2, -2, NaN]);
  assertEquals(phaseTracks(s, 1e-2)[0].x[1], -2);
  assertEquals(
    switchOffStep({
      events: [{ type: "note", step: 3, detail: "x" }, {
        type: "phase_change",
        step: 4000,
        phase: "regulariser_off",
      }],
    }),
    4000,
  );
  assertEquals(switchOffStep({ events: [] }), null);
});

Deno.test("theme: in the URL only when chosen, restored from it, auto follows the system", () => {
  assertEquals(defaultState().theme, "auto");
  for (const theme of ["light", "dark"] as const) {
    const q = stateToQuery({ ...defaultState(), theme });
    assertEquals(q, `theme=${theme}`);
    assertEquals(stateFromQuery(q), { ...defaultState(), theme });
  }
  // "auto" is the default: no parameter, and an explicit or unknown one reads as auto.
  assertEquals(stateToQuery({ ...defaultState(), theme: "auto" }), "");
  assertEquals(stateFromQuery("theme=auto").theme, "auto");
  assertEquals(stateFromQuery("theme=purple").theme, "auto");
  // Other settings are untouched by it.
  const q = stateToQuery({ ...defaultState(), theme: "dark", x: "wall", smoothing: 0 });
  assertEquals(stateFromQuery(q), { ...defaultState(), theme: "dark", x: "wall", smoothing: 0 });
  assertEquals(
    [resolveTheme("auto", false), resolveTheme("auto", true)],
    ["light", "dark"],
  );
  assertEquals([resolveTheme("light", true), resolveTheme("dark", false)], ["light", "dark"]);
});

Deno.test("theme palettes: text, axes and every run colour readable on the cards", () => {
  for (const name of ["light", "dark"] as ThemeName[]) {
    const p = PALETTES[name];
    assertEquals(p.name, name);
    assert.ok(contrast(p.text, p.card) >= 7, `${name}: text`);
    assert.ok(contrast(p.axis, p.card) >= 4.5, `${name}: axis labels`);
    assert.ok(contrast(p.muted, p.card) >= 4.5, `${name}: muted text`);
    assert.ok(contrast(p.panelLabel, p.card) >= 3, `${name}: panel labels`);
    assert.ok(contrast(p.target, p.card) >= 7, `${name}: v* outline`);
    // Lines and labels in run colours: at least 3:1 (WCAG's non-text contrast).
    for (const c of p.runs) assert.ok(contrast(c, p.card) >= 3, `${name}: run colour ${c}`);
    assertEquals(new Set(p.runs).size, p.runs.length, `${name}: distinct run colours`);
    // The trail fades from the card's colour towards the text's.
    assertEquals(p.trailFrom, p.card);
    assertEquals(mixHex(p.trailFrom, p.trailTo, 1), mixHex(p.trailTo, p.trailTo, 0));
  }
  assertEquals(PALETTES.light.runs.length, PALETTES.dark.runs.length);
  // A run keeps its slot when the theme changes; past the palette, colours do not repeat
  // (dashboard_defects_test.ts checks how far apart they are).
  assertEquals(runColour(1, PALETTES.dark), PALETTES.dark.runs[1]);
  assert.ok(
    !PALETTES.light.runs.includes(runColour(PALETTES.light.runs.length + 2, PALETTES.light)),
  );
  // The contrast function itself: black on white is 21, a colour on itself 1.
  assertAlmostEquals(contrast("#000000", "#ffffff"), 21, 1e-9);
  assertAlmostEquals(contrast("#3b6fd4", "#3b6fd4"), 1, 1e-12);
});

Deno.test("theme palettes agree with style.css (page, cards, text)", async () => {
  const css = await Deno.readTextFile(
    new URL("../client/dashboard/style.css", import.meta.url),
  );
  const block = (selector: string) => {
    const at = css.indexOf(`${selector} {`);
    assert.ok(at >= 0, `style.css has ${selector}`);
    const body = css.slice(at, css.indexOf("}", at));
    return (name: string) => body.match(new RegExp(`--${name}:\\s*([^;]+);`))?.[1].trim();
  };
  const vars = { light: block(":root"), dark: block(':root[data-theme="dark"]') };
  for (const name of ["light", "dark"] as ThemeName[]) {
    const p = PALETTES[name];
    for (const key of ["bg", "card", "text", "muted", "faint"] as const) {
      assertEquals(vars[name](key), p[key], `${name}: --${key}`);
    }
  }
});

Deno.test("panel labels: a label is written only where it overlaps none already written", () => {
  const taken: Box[] = [];
  assert.ok(claimLabelBox(taken, { x: 100, y: 50, w: 40, h: 12 }));
  // The same spot (a second run on the same path) and a near one are refused.
  assert.ok(!claimLabelBox(taken, { x: 100, y: 50, w: 40, h: 12 }));
  assert.ok(!claimLabelBox(taken, { x: 130, y: 55, w: 40, h: 12 }));
  assert.ok(!claimLabelBox(taken, { x: 141, y: 50, w: 40, h: 12 }), "within the 2 px gap");
  // Clear of it to the right, or below: written.
  assert.ok(claimLabelBox(taken, { x: 143, y: 50, w: 40, h: 12 }));
  assert.ok(claimLabelBox(taken, { x: 100, y: 65, w: 40, h: 12 }));
  assert.equal(taken.length, 3);
});
