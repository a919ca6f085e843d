/**
 * The dashboard in Debian's headless Chromium against a real lab server (free port, temp
 * data dir): start the Shape Matters preset from its button (shortened), then check that
 * each chart draws the expected series for every run, that the plotted points equal the
 * values the server logged (mean and min–max band over replicas, and the causal smoothed
 * mean), log axes, the zoom's re-bucketed history, the URL round trip, the experiment panel,
 * the dark theme (page, charts, panel, PNG export, URL, system setting), event labels that
 * do not collide (a periodic label-noise run with 39 on/off switches), and reconnection after
 * a server restart. Saves test-artifacts/dashboard.png and dashboard-dark.png.
 * Needs `deno task build` first (`deno task test` does it) and `apt-get install chromium`.
 */
import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { startLab } from "../server/api/server.ts";
import {
  CHROMIUM,
  CHROMIUM_ARGS,
  type Lab,
  lab,
  requireDashboardPrerequisites,
} from "./browser_harness.ts";

const root = new URL("..", import.meta.url).pathname;
const METRICS = ["test_error", "train_loss", "support_size", "v_norm"];
const STEPS = 20000, EVERY = 1000, REPLICAS = 4, SMOOTHING = 0.6;

/** Pixels of a canvas, counted by exact colour (hex #rrggbb, opaque), and all opaque ones. */
function canvasColours(page: Page, selector: string, colours: string[]) {
  return page.evaluate(([sel, hexes]) => {
    const c = document.querySelector(sel) as HTMLCanvasElement;
    const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    const want = (hexes as string[]).map((x) => parseInt(x.slice(1), 16));
    const counts = want.map(() => 0);
    let opaque = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] !== 255) continue;
      opaque++;
      const k = want.indexOf((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      if (k >= 0) counts[k]++;
    }
    return { counts, opaque };
  }, [selector, colours] as const);
}

/**
 * Waits two animation frames: a view change redraws (and may rebuild a chart, replacing its
 * elements) in the next frame, so measure elements only after it.
 */
const settled = (page: Page) =>
  page.evaluate(() =>
    new Promise<void>((resolve) =>
      requestAnimationFrame(() => requestAnimationFrame(() => resolve()))
    )
  );

const bodyBackground = (page: Page) =>
  page.evaluate(() => getComputedStyle(document.body).backgroundColor);

interface LoggedRun {
  steps: number[];
  /** Per metric, per step: replica values as logged (CSV of the run log). */
  values: Record<string, number[][]>;
}

async function loggedRun(base: string, id: string): Promise<LoggedRun> {
  const text = await (await fetch(`${base}/api/runs/${id}/metrics.csv`)).text();
  const [head, ...rows] = text.trim().split("\n");
  const cols = head.split(",");
  const out: LoggedRun = { steps: [], values: Object.fromEntries(METRICS.map((m) => [m, []])) };
  const parse = (
    s: string,
  ) => (s === "NaN" ? NaN : s === "Inf" ? Infinity : s === "-Inf" ? -Infinity : Number(s));
  for (const line of rows) {
    const cells = line.split(",");
    const step = Number(cells[0]);
    if (out.steps[out.steps.length - 1] !== step) {
      out.steps.push(step);
      for (const m of METRICS) out.values[m].push([]);
    }
    for (const m of METRICS) out.values[m].at(-1)!.push(parse(cells[cols.indexOf(m)]));
  }
  return out;
}

/** What the chart must show for one step: mean over finite replicas, min and max. */
function summary(values: number[]): { mean: number | null; lo: number | null; hi: number | null } {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return { mean: null, lo: null, hi: null };
  let sum = 0;
  for (const v of finite) sum += v;
  return { mean: sum / finite.length, lo: Math.min(...finite), hi: Math.max(...finite) };
}

function debiasedEma(xs: (number | null)[], beta: number): (number | null)[] {
  let s = 0, t = 0;
  return xs.map((x) => {
    if (x === null) return null;
    t++;
    s = beta * s + (1 - beta) * x;
    return s / (1 - beta ** t);
  });
}

Deno.test({
  name: "dashboard: Shape Matters preset draws the logged values, log axes, zoom, URL, restart",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await requireDashboardPrerequisites();
    const dataDir = await Deno.makeTempDir({ prefix: "lab-dashboard-test-" });
    let server = await startLab({ port: 0, hostname: "127.0.0.1", dataDir });
    const base = server.url;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(base + "/");

      // The new-run form comes from the schema: defaults, ranges and docs shown, parameters
      // that do not apply to the chosen algorithm hidden, server field errors shown in place.
      await page.click("details.new-run > summary");
      const form = page.locator("form.run-form");
      const visible = async (name: string) =>
        await form.locator(`[data-field="${name}"]`).isVisible();
      await form.locator("select[name=algo]").selectOption("gd");
      assert.deepEqual(
        await Promise.all(["lr", "delta", "noise", "sigma", "lambda"].map(visible)),
        [true, false, false, false, false],
      );
      await form.locator("select[name=algo]").selectOption("gaussian");
      assert.deepEqual(await Promise.all(["delta", "sigma"].map(visible)), [false, true]);
      assert.equal(await form.locator("input[name=lr]").inputValue(), "0.01");
      assert.match(
        await form.locator('[data-field="lr"] .field-range').innerText(),
        /\[1e-9, 10\]/,
      );
      assert.match(await form.locator('[data-field="sigma"] .field-doc').innerText(), /Gaussian/);
      await form.locator("input[name=lr]").fill("50");
      await form.locator("button[type=submit]").click();
      await page.waitForFunction(() =>
        document.querySelector('[data-field="lr"] .field-error')?.textContent?.includes(
          "[1e-9, 10]",
        )
      );
      await page.click("details.new-run > summary");

      // Start the preset from its own card, shortened.
      const card = page.locator('.preset[data-preset="shape-matters-fig1-right"]');
      assert.match(
        await card.locator(".preset-title").innerText(),
        /^Shape Matters, Fig\. 1 \(right\)/,
      );
      await card.locator("[data-action=options]").click();
      await card.locator("input[name=steps]").fill(String(STEPS));
      const backends = await card.locator("select[name=backend] option").allInnerTexts();
      await card.locator("select[name=backend]").selectOption(
        backends.includes("wasm") ? "wasm" : "auto",
      );
      await card.locator("button.primary").click();
      await page.waitForFunction(
        (n) => {
          // deno-lint-ignore no-explicit-any
          const runs = (globalThis as any).__lab.runs();
          return runs.length === 4 &&
            runs.every((r: { status: string; rows: number }) =>
              r.status === "finished" && r.rows === n
            );
        },
        STEPS / EVERY + 1,
        { timeout: 45_000 },
      );
      const runs: { id: string; label: string; colour: string }[] = await lab(
        page,
        (l) => l.runs(),
      );
      // Runs carry the preset's names (the spec's `name`), in the preset's order.
      assert.deepEqual(runs.map((r) => r.label.split(" · ")[0]), [
        "GD",
        "label noise",
        "mini-batch noise",
        "Gaussian noise",
      ]);
      assert.equal(new Set(runs.map((r) => r.colour)).size, 4, "distinct colours");
      assert.deepEqual(await lab(page, (l) => l.state().metrics), METRICS);
      await page.waitForTimeout(100); // one more animation frame after the last record

      // Each chart: per run a min band, max band, raw mean and smoothed mean, equal to the log.
      const logged = new Map<string, LoggedRun>();
      for (const r of runs) {
        const log = await loggedRun(base, r.id);
        assert.ok(log.values.test_error.every((v) => v.length === REPLICAS), "4 replicas a run");
        logged.set(r.id, log);
      }
      for (const metric of METRICS) {
        const chart = await page.evaluate((m) => (globalThis as Lab).__lab.chart(m), metric);
        assert.ok(chart, `chart ${metric} drawn`);
        assert.deepEqual(
          chart.series.map((s: { run: string; kind: string }) => `${s.run}:${s.kind}`),
          // A count is a step function: never smoothed (its MetricSpec says smooth: false).
          runs.flatMap((r) =>
            (metric === "support_size" ? ["lo", "hi", "raw"] : ["lo", "hi", "raw", "smooth"])
              .map((k) => `${r.id}:${k}`)
          ),
        );
        const x: number[] = chart.data[0];
        for (const r of runs) {
          const log = logged.get(r.id)!;
          assert.deepEqual(x, log.steps, `${metric}: x is the logged steps`);
          const want = log.values[metric].map(summary);
          const col = (kind: string) =>
            chart.data[
              1 +
              chart.series.findIndex((s: { run: string; kind: string }) =>
                s.run === r.id && s.kind === kind
              )
            ];
          const logY = chart.scales.y.distr === 3;
          const shown = (v: number | null) => (v === null || (logY && v <= 0) ? null : v);
          assert.deepEqual(
            col("raw"),
            want.map((w) => shown(w.mean)),
            `${metric} ${r.label}: mean`,
          );
          assert.deepEqual(col("lo"), want.map((w) => shown(w.lo)), `${metric} ${r.label}: min`);
          assert.deepEqual(col("hi"), want.map((w) => shown(w.hi)), `${metric} ${r.label}: max`);
          if (metric === "support_size") continue;
          const smooth = debiasedEma(want.map((w) => w.mean), SMOOTHING);
          col("smooth").forEach((v: number | null, i: number) => {
            if (smooth[i] === null || shown(smooth[i]) === null) return assert.equal(v, null);
            assert.ok(
              Math.abs(v! - smooth[i]!) <= 1e-12 * Math.abs(smooth[i]!),
              `${metric}: smoothed ${i}`,
            );
          });
        }
      }

      // The Shape Matters panel shows the latest v⊙v of every run against v* (r = 5).
      const panel = await lab(page, (l) => l.panel("shape-matters"));
      for (const r of runs) {
        assert.equal(panel[r.id].width, 100);
        assert.equal(panel[r.id].r, 5);
        assert.equal(panel[r.id].step, STEPS);
      }

      await page.screenshot({ path: `${root}test-artifacts/dashboard.png`, fullPage: true });

      // Log axes: the losses start on log y (the experiment's suggestion); toggle v_norm,
      // then switch x to log: step 0 leaves the plot, every x is positive.
      assert.equal(await lab(page, (l) => l.chart("test_error").scales.y.distr), 3);
      assert.equal(await lab(page, (l) => l.chart("v_norm").scales.y.distr), 1);
      await page.click('.chart-card[data-metric="v_norm"] [data-role=ylog]');
      await page.click("[data-control=xscale] [data-value=log]");
      await page.waitForFunction(() =>
        (globalThis as Lab).__lab.chart("v_norm")?.scales.y.distr === 3
      );
      for (const metric of METRICS) {
        const c = await page.evaluate((m) => (globalThis as Lab).__lab.chart(m), metric);
        assert.equal(c.scales.x.distr, 3, `${metric}: log x`);
        assert.equal(c.data[0][0], EVERY, `${metric}: step 0 is off a log axis`);
      }
      assert.match(page.url(), /xscale=log/);
      assert.match(page.url(), /v_norm:log/);

      // URL round trip: a new page on the same URL shows the same view.
      const url = page.url();
      const view = await lab(page, (l) => ({
        state: l.state(),
        charts: l.charts().map((m: string) => {
          const c = l.chart(m);
          return { m, series: c.series, x: c.scales.x.distr, y: c.scales.y.distr, data: c.data };
        }),
      }));
      const again = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
      await again.goto(url);
      await again.waitForFunction(
        (n) =>
          (globalThis as Lab).__lab?.runs().filter((r: { rows: number }) => r.rows === n).length ===
            4,
        STEPS / EVERY + 1,
      );
      await again.waitForTimeout(100);
      const view2 = await lab(again, (l) => ({
        state: l.state(),
        charts: l.charts().map((m: string) => {
          const c = l.chart(m);
          return { m, series: c.series, x: c.scales.x.distr, y: c.scales.y.distr, data: c.data };
        }),
      }));
      if (JSON.stringify(view2) !== JSON.stringify(view)) {
        const brief = (v: typeof view) =>
          JSON.stringify(
            v.charts.map((c: Lab) => [
              c.m,
              c.x,
              c.y,
              c.series.length,
              c.data.map((d: Lab) => d.length),
            ]),
          );
        console.log(
          brief(view),
          "\n",
          brief(view2),
          JSON.stringify(view.state),
          JSON.stringify(view2.state),
        );
      }
      assert.deepEqual(view2, view);
      await again.close();

      // Zoom: drag across the middle of test_error; every chart takes the window and asks
      // the server for it re-bucketed; points stay within the plot's pixel width.
      await page.click("[data-control=xscale] [data-value=lin]");
      await settled(page);
      const over = page.locator('.chart-card[data-metric="test_error"] .u-over');
      const box = (await over.boundingBox())!;
      await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
      await page.waitForFunction(() => (globalThis as Lab).__lab.stats().historyAnswers >= 4);
      await page.waitForTimeout(100);
      const zoom: [number, number] = await lab(page, (l) => l.state().zoom);
      assert.ok(zoom && zoom[0] > 4000 && zoom[1] < 14000 && zoom[0] < zoom[1], `zoom ${zoom}`);
      assert.match(page.url(), /zoom=/);
      for (const metric of METRICS) {
        const c = await page.evaluate((m) => (globalThis as Lab).__lab.chart(m), metric);
        assert.ok(
          Math.abs(c.scales.x.min - zoom[0]) < 1e-6 && Math.abs(c.scales.x.max - zoom[1]) < 1e-6,
        );
        assert.ok(c.pointCount <= c.plotWidth + 2, `${metric}: ${c.pointCount} points`);
        // Inside the window the plotted values are the server's buckets: equal to the log.
        const r = runs[1], log = logged.get(r.id)!;
        const raw = c.data[
          1 +
          c.series.findIndex((s: { run: string; kind: string }) =>
            s.run === r.id && s.kind === "raw"
          )
        ];
        c.data[0].forEach((step: number, i: number) => {
          const j = log.steps.indexOf(step);
          if (raw[i] === null || raw[i] === undefined) return;
          assert.equal(raw[i], summary(log.values[metric][j]).mean, `${metric} zoomed at ${step}`);
        });
      }
      await page.dblclick('.chart-card[data-metric="test_error"] .u-over');
      await page.waitForFunction(() => (globalThis as Lab).__lab.state().zoom === null);

      // Individual replicas on demand; wall-clock x; the legend follows the cursor.
      await page.check(".toolbar input[name=show-replicas]");
      await page.waitForFunction(() =>
        (globalThis as Lab).__lab.chart("test_error").series.filter((s: { kind: string }) =>
          s.kind === "replica"
        ).length === 16
      );
      await page.uncheck(".toolbar input[name=show-replicas]");
      await page.click("[data-control=x] [data-value=wall]");
      await page.waitForFunction(() => (globalThis as Lab).__lab.state().x === "wall");
      await page.waitForTimeout(100);
      const wallX: number[] = await lab(page, (l) => l.chart("train_loss").data[0]);
      assert.ok(
        wallX.length >= STEPS / EVERY + 1 && wallX.every((v, i) => i === 0 || v > wallX[i - 1]),
      );
      await page.click("[data-control=x] [data-value=step]");
      await settled(page);
      const plot =
        (await page.locator('.chart-card[data-metric="test_error"] .u-over').boundingBox())!;
      await page.mouse.move(plot.x + plot.width * 0.5, plot.y + plot.height * 0.5);
      await page.waitForFunction(() =>
        /^step \d/.test(
          document.querySelector('.chart-card[data-metric="test_error"] .legend-x')?.textContent ??
            "",
        )
      );

      // Export: CSV of what the chart shows, PNG of the chart.
      const card0 = page.locator('.chart-card[data-metric="test_error"]');
      const [csvDownload] = await Promise.all([
        page.waitForEvent("download"),
        card0.locator("button", { hasText: "CSV" }).click(),
      ]);
      const csv = await Deno.readTextFile((await csvDownload.path())!);
      const csvLines = csv.trim().split("\n");
      assert.equal(csvLines.length, STEPS / EVERY + 2);
      assert.match(csvLines[0], /^step,GD · \w+ \[shape-matters-[^\]]+\] min,/);
      const [pngDownload] = await Promise.all([
        page.waitForEvent("download"),
        card0.locator("button", { hasText: "PNG" }).click(),
      ]);
      const png = await Deno.readFile((await pngDownload.path())!);
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);

      // Dark theme from the toolbar: the page, the charts (zoom and data kept), the panel and
      // the PNG export change colour; the URL keeps the choice; "auto" follows the system.
      const LIGHT_GRID = "#eef0f3", DARK_GRID = "#262b34";
      const LIGHT_PANEL_GRID = "#e6e8eb", DARK_PANEL_GRID = "#2a303a";
      const chartCanvas = '.chart-card[data-metric="test_error"] canvas';
      const panelCanvas = `canvas.bars[data-run="${runs[0].id}"]`;
      assert.deepEqual(await lab(page, (l) => l.theme()), { choice: "auto", shown: "light" });
      const lightBg = await bodyBackground(page);
      assert.equal(lightBg, "rgb(244, 245, 247)");
      const lightPixels = await canvasColours(page, chartCanvas, [LIGHT_GRID, DARK_GRID]);
      assert.ok(
        lightPixels.counts[0] > 300 && lightPixels.counts[1] === 0,
        `${lightPixels.counts}`,
      );
      const lightPanel = await canvasColours(page, panelCanvas, [
        LIGHT_PANEL_GRID,
        DARK_PANEL_GRID,
      ]);
      assert.ok(lightPanel.counts[0] > 100 && lightPanel.counts[1] === 0, `${lightPanel.counts}`);
      // Zoom in with the wheel first: the theme switch must keep the window.
      await page.mouse.move(plot.x + plot.width * 0.5, plot.y + plot.height * 0.5);
      await page.mouse.wheel(0, -100);
      await page.waitForFunction(() => (globalThis as Lab).__lab.state().zoom !== null);
      await page.waitForTimeout(300); // the zoomed window's history answers
      const zoomed = await lab(
        page,
        (l) => ({ zoom: l.state().zoom, chart: l.chart("test_error") }),
      );
      await page.click("[data-control=theme] [data-value=dark]");
      await page.waitForFunction((id) => {
        const l = (globalThis as Lab).__lab;
        return document.documentElement.dataset.theme === "dark" &&
          l.chart("test_error")?.theme === "dark" &&
          l.panel("shape-matters")?.[id]?.theme === "dark";
      }, runs[0].id);
      assert.match(page.url(), /[?&]theme=dark(&|$)/);
      assert.deepEqual(await lab(page, (l) => l.theme()), { choice: "dark", shown: "dark" });
      assert.equal(await bodyBackground(page), "rgb(15, 18, 23)");
      assert.equal(
        await page.locator("[data-control=theme] button.on").getAttribute("data-value"),
        "dark",
      );
      const darkChart = await lab(page, (l) => l.chart("test_error"));
      assert.deepEqual(await lab(page, (l) => l.state().zoom), zoomed.zoom, "zoom kept");
      assert.deepEqual(darkChart.data, zoomed.chart.data, "data kept");
      assert.deepEqual(darkChart.scales, zoomed.chart.scales, "scales kept");
      // A resize redraws at the new width, still dark.
      await page.setViewportSize({ width: 1300, height: 1000 });
      await page.waitForFunction(
        (w) => (globalThis as Lab).__lab.chart("test_error").plotWidth !== w,
        darkChart.plotWidth,
      );
      await settled(page);
      assert.equal(await lab(page, (l) => l.chart("test_error").theme), "dark");
      const darkPixels = await canvasColours(page, chartCanvas, [LIGHT_GRID, DARK_GRID]);
      assert.ok(darkPixels.counts[0] === 0 && darkPixels.counts[1] > 300, `${darkPixels.counts}`);
      assert.ok(darkPixels.opaque > 0.5 * lightPixels.opaque, "the chart still draws its curves");
      const darkPanel = await canvasColours(page, panelCanvas, [LIGHT_PANEL_GRID, DARK_PANEL_GRID]);
      assert.ok(darkPanel.counts[0] === 0 && darkPanel.counts[1] > 100, `${darkPanel.counts}`);
      // The PNG export is drawn on the dark card colour (#181c23).
      const exported = await lab(page, (l) => l.chartPng("test_error"));
      assert.deepEqual(exported.corner, [0x18, 0x1c, 0x23, 255]);
      await page.screenshot({ path: `${root}test-artifacts/dashboard-dark.png`, fullPage: true });
      // The URL restores the theme; "auto" writes no parameter and follows the system setting,
      // also when it changes while the page is open.
      const darkUrl = page.url();
      const themed = await browser.newPage({ viewport: { width: 800, height: 600 } });
      themed.on("pageerror", (e) => errors.push(e.message));
      await themed.goto(darkUrl);
      await themed.waitForFunction(() => document.documentElement.dataset.theme === "dark");
      assert.equal(await bodyBackground(themed), "rgb(15, 18, 23)");
      await themed.click("[data-control=theme] [data-value=auto]");
      await themed.waitForFunction(() => document.documentElement.dataset.theme === "light");
      assert.doesNotMatch(themed.url(), /theme=/);
      assert.equal(await bodyBackground(themed), lightBg);
      await themed.emulateMedia({ colorScheme: "dark" });
      await themed.waitForFunction(() => document.documentElement.dataset.theme === "dark");
      assert.doesNotMatch(themed.url(), /theme=/);
      await themed.close();
      await page.setViewportSize({ width: 1440, height: 1000 });
      await page.click("[data-control=theme] [data-value=light]");
      await page.waitForFunction(() =>
        (globalThis as Lab).__lab.chart("test_error")?.theme === "light"
      );
      assert.equal(await bodyBackground(page), lightBg);
      await page.dblclick('.chart-card[data-metric="test_error"] .u-over');
      await page.waitForFunction(() => (globalThis as Lab).__lab.state().zoom === null);

      // Event labels: a periodic label-noise run has 39 noise on/off switches. Every marker
      // is drawn, the labels that fit are written without overlapping, and the cursor on a
      // marker whose label was dropped names its event in the legend.
      const periodic = await fetch(`${base}/api/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          experiment: "linear-label-noise",
          params: { algo: "periodic", period: 500, d: 10, m: 100, data_mode: "online", lr: 0.005 },
          replicas: 1,
          steps: 20000,
          every: 200,
        }),
      });
      assert.equal(periodic.status, 201);
      const { id: periodicId } = await periodic.json();
      const events = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
      events.on("pageerror", (e) => errors.push(e.message));
      await events.goto(`${base}/?runs=${periodicId}&metrics=w_norm_mean&theme=dark`);
      await events.waitForFunction(
        (id) => {
          const l = (globalThis as Lab).__lab;
          const run = l?.runs().find((r: { id: string }) => r.id === id);
          return run?.status === "finished" && run.rows === 101 &&
            l.chart("w_norm_mean")?.markers.filter((m: { step: number }) => m.step % 500 === 0)
                .length === 39;
        },
        periodicId,
        { timeout: 15_000 },
      );
      const marked = await lab(events, (l) => l.chart("w_norm_mean"));
      assert.equal(marked.theme, "dark");
      type Marker = {
        x: number;
        step: number;
        label: null | { left: number; row: number; width: number };
      };
      const markers: Marker[] = marked.markers;
      // The 39 planned switches (and any phase the run observed) each have a marker.
      const switches = Array.from({ length: 39 }, (_, k) => 500 * (k + 1));
      assert.deepEqual(markers.map((m) => m.step).filter((x) => x % 500 === 0), switches);
      const labelled = markers.filter((m) => m.label);
      assert.ok(labelled.length >= 5 && labelled.length < 30, `${labelled.length} labels`);
      for (const a of labelled) {
        assert.ok(
          a.label!.row < 3 && a.label!.left >= 0 &&
            a.label!.left + a.label!.width <= marked.plotAreaWidth,
        );
        for (const b of labelled) {
          if (a === b || a.label!.row !== b.label!.row) continue;
          const [p, q] = a.label!.left < b.label!.left
            ? [a.label!, b.label!]
            : [b.label!, a.label!];
          assert.ok(p.left + p.width <= q.left, `labels at steps ${a.step}, ${b.step} overlap`);
        }
      }
      // A marker without a label, and no other marker within 6 px: the cursor beside it.
      const hidden = markers.find((m) =>
        !m.label && markers.every((o) => o === m || Math.abs(o.x - m.x) > 6)
      )!;
      assert.ok(hidden, "a dropped label");
      await settled(events);
      const over2 =
        (await events.locator('.chart-card[data-metric="w_norm_mean"] .u-over').boundingBox())!;
      await events.mouse.move(over2.x + hidden.x + 1, over2.y + over2.height / 2);
      await events.waitForFunction(
        (step) =>
          (globalThis as Lab).__lab.chart("w_norm_mean").legendEvent.includes(
            `at step ${step.toLocaleString("en-US")}`,
          ),
        hidden.step,
      );
      await events.mouse.move(over2.x + 1, over2.y + 5);
      await events.waitForFunction(() =>
        (globalThis as Lab).__lab.chart("w_norm_mean").legendEvent === ""
      );
      await events.screenshot({ path: `${root}test-artifacts/dashboard-dark-events.png` });
      await events.close();

      // Server restart: the page reconnects, resumes with `since` (no duplicates, no gaps)
      // and a run started on the new server streams in.
      const port = server.port;
      await server.shutdown();
      await page.waitForFunction(() => !(globalThis as Lab).__lab.connected());
      server = await startLab({ port, hostname: "127.0.0.1", dataDir });
      await page.waitForFunction(() => (globalThis as Lab).__lab.connected(), null, {
        timeout: 15_000,
      });
      const res = await fetch(`${base}/api/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          experiment: "shape-matters",
          params: { algo: "gd" },
          replicas: 2,
          steps: 10_000_000,
          every: 1000,
        }),
      });
      assert.equal(res.status, 201);
      const { id: late } = await res.json();
      await page.waitForFunction(
        (id) =>
          (globalThis as Lab).__lab.runs().some((r: { id: string; rows: number }) =>
            r.id === id && r.rows >= 4
          ),
        late,
        { timeout: 20_000 },
      );
      for (const r of runs) {
        const streamed = await page.evaluate((id) => (globalThis as Lab).__lab.streamed(id), r.id);
        assert.deepEqual(
          streamed.steps,
          logged.get(r.id)!.steps,
          "no gap, no duplicate after restart",
        );
      }
      // Stop and delete from the runs list.
      const lateRow = page.locator(`.run-row[data-run="${late}"]`);
      await lateRow.locator("[data-action=stop]").click();
      await page.waitForFunction(
        (id) =>
          (globalThis as Lab).__lab.runs().some((r: { id: string; status: string }) =>
            r.id === id && r.status === "stopped"
          ),
        late,
      );
      await lateRow.locator("[data-action=delete]").click();
      await lateRow.locator("[data-action=delete]").click();
      await page.waitForFunction(
        (id) => !(globalThis as Lab).__lab.runs().some((r: { id: string }) => r.id === id),
        late,
      );
      assert.deepEqual(errors, [], "no page errors");
    } finally {
      await browser.close();
      await server.shutdown();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
