/**
 * Sweeps in the dashboard, in Debian's headless Chromium against a real lab: a 2-D label-noise
 * sweep (δ × lr × 2 seeds, written as per-replica lists, which the server takes today; the
 * header's `sweep` field gives the same grouping) is drawn one line per setting whose mean and
 * band come from that setting's seeds only; its sweep view's heatmap cells and 1-D points
 * equal the final values of the run's CSV export, the view's state round-trips through the
 * URL, and CSV/PNG (2×) export work. Also the dashboard defects of issue 12 that need a page:
 * the caption follows the experiment shown, the legend's bold value is the raw one, step
 * functions are not smoothed, event labels stay off the data, PNG export is 2×, the form
 * refuses "abc" naming the field, a fresh load shows the latest experiment's runs, and the
 * runs list filters and groups. Saves docs-ready screenshots to test-artifacts/.
 * Needs `deno task build` first and `apt-get install chromium`.
 */
import assert from "node:assert/strict";
import { type Lab, lab, labWithBrowser } from "./browser_harness.ts";
import { close, finalValues, mean, post, waitFinished } from "./sweep_checks.ts";

const root = new URL("..", import.meta.url).pathname;
const DELTAS = [0.5, 2], LRS = [0.005, 0.02], SEEDS = 2;
const STEPS = 3000, EVERY = 100;

/** Replica order of the grid: δ outermost, then lr, then seed. */
const grid = DELTAS.flatMap((d) =>
  LRS.flatMap((lr) => Array.from({ length: SEEDS }, () => [d, lr]))
);

Deno.test({
  name: "dashboard sweep: per-setting lines, sweep view and heatmap equal the CSV; defects",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { base, browser, close: closeAll } = await labWithBrowser("lab-sweep-browser-");
    try {
      // A PEGR run first (an older experiment), then the sweep (the latest experiment).
      const pegr = await post(base, {
        experiment: "pegr",
        params: { algo: "pegr" },
        replicas: 2,
        steps: 200,
        every: 10,
        backend: "wasm",
      });
      const sweep = await post(base, {
        experiment: "shape-matters",
        params: {
          d: 20,
          n: 10,
          algo: "label-noise",
          delta: grid.map((g) => g[0]),
          lr: grid.map((g) => g[1]),
          lr_schedule: [[1500, 0.5]],
        },
        replicas: grid.length,
        steps: STEPS,
        every: EVERY,
        backend: "wasm",
      });
      await waitFinished(base, [pegr, sweep]);

      // A fresh load shows the latest experiment's runs only (not the PEGR run's 11 metrics).
      const page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${base}/`);
      await page.waitForFunction(
        (n) =>
          (globalThis as Lab).__lab?.runs().some((r: { rows: number; shown: boolean }) =>
            r.rows === n && r.shown
          ),
        STEPS / EVERY + 1,
        { timeout: 60_000 },
      );
      assert.deepEqual(await lab(page, (l) => l.state().runs), [sweep]);
      assert.deepEqual(
        (await lab(page, (l) => l.charts())).sort(),
        ["support_size", "test_error", "train_loss", "v_norm"],
      );

      // A GD run of the same experiment, to compare algorithms in the sweep view below.
      const gd = await post(base, {
        experiment: "shape-matters",
        params: { d: 20, n: 10, algo: "gd", lr: 0.02 },
        replicas: 2,
        steps: STEPS,
        every: EVERY,
        backend: "wasm",
      });
      await waitFinished(base, [gd]);

      // One line per setting: mean and band over that setting's 2 seeds only.
      const finals = await finalValues(base, sweep, "test_error");
      // The chart redraws after the stream's rows arrive: wait until it holds the last step.
      await page.waitForFunction(
        (last) => (globalThis as Lab).__lab?.chart("test_error")?.data?.[0]?.at(-1) === last,
        STEPS,
        { timeout: 60_000 },
      );
      const chart = await lab(page, (l) => l.chart("test_error"));
      const lines = [...new Set(chart.series.map((s: { line: number }) => s.line))];
      assert.equal(lines.length, DELTAS.length * LRS.length, "4 settings, 4 lines");
      const legend = await page.locator('.chart-card[data-metric="test_error"] .legend-label')
        .allInnerTexts();
      assert.equal(legend.length, 4);
      for (const [k, [d, lr]] of DELTAS.flatMap((d) => LRS.map((lr) => [d, lr])).entries()) {
        assert.ok(
          legend[k].includes(`δ=${d}`) && legend[k].includes(`lr=${lr}`),
          `legend ${legend[k]}`,
        );
        const seeds = grid.map((g, r) => (g[0] === d && g[1] === lr ? r : -1)).filter((r) =>
          r >= 0
        );
        const col = (kind: string) =>
          chart.data[
            1 + chart.series.findIndex((s: { line: number; kind: string }) =>
              s.line === k && s.kind === kind
            )
          ];
        const last = chart.data[0].length - 1;
        close(col("raw")[last], mean(seeds.map((r) => finals[r])), `line ${k} mean`);
        close(col("lo")[last], Math.min(...seeds.map((r) => finals[r])), `line ${k} min`);
        close(col("hi")[last], Math.max(...seeds.map((r) => finals[r])), `line ${k} max`);
      }
      // Lines coloured on a sequential scale: 4 settings, 4 distinct styles.
      const swatches = await page.locator('.chart-card[data-metric="test_error"] .legend-row i')
        .evaluateAll((els) => els.map((e) => (e as HTMLElement).style.background));
      assert.equal(new Set(swatches).size, 2, "colour follows one parameter (2 values)");

      // Defect: the legend's bold value is the raw last mean; the smoothed one is marked.
      const rowText = await page.locator('.chart-card[data-metric="test_error"] .legend-row')
        .first().innerText();
      const raw0 = await lab(page, (l) => {
        const c = l.chart("test_error");
        const i = c.series.findIndex((s: { line: number; kind: string }) =>
          s.line === 0 && s.kind === "raw"
        );
        return l.format(c.data[1 + i][c.data[0].length - 1]);
      });
      const bold = await page.locator('.chart-card[data-metric="test_error"] .legend-value')
        .first().innerText();
      assert.equal(bold, raw0, `legend: ${rowText}`);
      assert.match(rowText, /smoothed /);

      // Defect: a count (support_size) is never smoothed, even with smoothing on.
      const support = await lab(page, (l) => l.chart("support_size").series);
      assert.ok(support.every((s: { kind: string }) => s.kind !== "smooth"), "support_size");
      assert.ok(chart.series.some((s: { kind: string }) => s.kind === "smooth"), "test_error");

      // Defect: event labels sit in a strip above the plot area, not on the data.
      const markers = (await lab(page, (l) => l.chart("test_error"))).markers;
      assert.ok(markers.length >= 1, "the lr_change marker");
      for (const m of markers) {
        if (m.label) assert.ok(m.label.top < 0, `label row at ${m.label.top} px`);
      }

      // Defect: PNG export at 2× the chart's CSS size.
      const png = await lab(page, (l) => l.chartPng("test_error"));
      const cssWidth = await page.locator('.chart-card[data-metric="test_error"] canvas').evaluate(
        (c) => (c as HTMLCanvasElement).getBoundingClientRect().width,
      );
      assert.equal(png.width, Math.round(cssWidth) * 2, `PNG ${png.width} px for ${cssWidth}`);

      // The sweep view as a heatmap over δ × lr: cells = mean over seeds of the CSV's finals.
      await page.goto(`${base}/?runs=${sweep}&sweep=test_error&sweep_x=delta&sweep_y=lr`);
      // The view fills in as the run's history arrives: wait for the cells of its last step.
      await page.waitForFunction(
        (last) => {
          const view = (globalThis as Lab).__lab?.sweep();
          return view?.cells?.length === 4 && view.steps?.[0] === last;
        },
        STEPS,
        { timeout: 60_000 },
      );
      const hm = await lab(page, (l) => l.sweep());
      assert.equal(hm.y, "lr");
      assert.deepEqual(hm.steps, [STEPS]);
      for (const cell of hm.cells) {
        const seeds = grid.map((g, r) => (g[0] === cell.x && g[1] === cell.y ? r : -1)).filter((
          r,
        ) => r >= 0);
        assert.equal(cell.n, SEEDS);
        close(cell.mean, mean(seeds.map((r) => finals[r])), `cell δ=${cell.x} lr=${cell.y}`);
      }
      // The tooltip names the cell and its value.
      const canvas = page.locator(".sweep-card canvas");
      const cb = (await canvas.boundingBox())!;
      await page.mouse.move(cb.x + 62 + 20, cb.y + 30);
      await page.waitForFunction(() => (globalThis as Lab).__lab.sweep().tooltip !== "");
      assert.match(await lab(page, (l) => l.sweep().tooltip), /δ=.* · lr=.*: .*mean of 2 seeds/);
      await page.mouse.move(0, 0);
      await page.locator(".sweep-card").screenshot({
        path: `${root}test-artifacts/sweep-heatmap.png`,
      });

      // CSV export of the view: one row per replica with its setting, seed and final value.
      const csv: string = await lab(page, (l) => l.sweepCsv());
      const [head, ...rows] = csv.trim().split("\n");
      const hc = head.split(",");
      assert.deepEqual(hc.slice(-4), ["seed", "replica", "step", "test_error"]);
      assert.equal(rows.length, grid.length);
      for (const r of rows) {
        const c = r.split(",");
        const replica = Number(c[hc.indexOf("replica")]);
        close(Number(c[hc.indexOf("test_error")]), finals[replica], `CSV replica ${replica}`);
        assert.equal(Number(c[hc.indexOf("delta")]), grid[replica][0]);
        assert.equal(Number(c[hc.indexOf("lr")]), grid[replica][1]);
      }
      const spng = await lab(page, (l) => l.sweepPng());
      const sweepWidth = (await canvas.boundingBox())!.width;
      assert.equal(spng.width, Math.round(sweepWidth) * 2, "sweep PNG at 2×");

      // 1-D: test_error against δ, one line per lr, seeds as points, log axis (δ swept on log).
      await page.selectOption(".sweep-card select[name=sweep-y]", "");
      await page.waitForFunction(() => (globalThis as Lab).__lab.sweep().cells === null);
      assert.match(page.url(), /sweep_x=delta/);
      assert.doesNotMatch(page.url(), /sweep_y=/);
      const oneD = await lab(page, (l) => l.sweep());
      assert.equal(oneD.lines.length, LRS.length);
      for (const line of oneD.lines) {
        const lr = Number(line.label.split("=")[1]);
        assert.ok(LRS.includes(lr), line.label);
        assert.deepEqual(line.stats.map((s: { x: number }) => s.x), DELTAS);
        for (const s of line.stats) {
          const seeds = grid.map((g, r) => (g[0] === s.x && g[1] === lr ? r : -1)).filter((r) =>
            r >= 0
          );
          close(s.mean, mean(seeds.map((r) => finals[r])), `δ=${s.x} ${line.label}`);
          close(s.lo, Math.min(...seeds.map((r) => finals[r])), "band lo");
          close(s.hi, Math.max(...seeds.map((r) => finals[r])), "band hi");
        }
      }
      assert.ok(oneD.ticks.x >= 3 && oneD.ticks.y >= 3, `ticks ${JSON.stringify(oneD.ticks)}`);
      // Best so far is never worse than the final value.
      await page.click(".sweep-card [data-control=sweep-at] [data-value=best]");
      await page.waitForFunction(() => (globalThis as Lab).__lab.sweep().at === "best");
      const best = await lab(page, (l) => l.sweep());
      best.lines.forEach((l: Lab, i: number) =>
        l.stats.forEach((s: Lab, k: number) => assert.ok(s.mean <= oneD.lines[i].stats[k].mean))
      );
      assert.match(page.url(), /sweep_at=best/);
      // At the cursor: hovering the middle of a time chart moves the view to that step.
      await page.click(".sweep-card [data-control=sweep-at] [data-value=cursor]");
      await page.waitForFunction(() => (globalThis as Lab).__lab.sweep().at === "cursor");
      const over = (await page.locator('.chart-card[data-metric="test_error"] .u-over')
        .boundingBox())!;
      await page.mouse.move(over.x + over.width * 0.5, over.y + over.height * 0.5);
      await page.waitForFunction((n) => {
        const steps = (globalThis as Lab).__lab.sweep().steps;
        return steps.length === 1 && steps[0] > 0 && steps[0] < n;
      }, STEPS);
      await page.mouse.move(0, 0);
      await page.click(".sweep-card [data-control=sweep-at] [data-value=final]");
      await page.waitForFunction(() => (globalThis as Lab).__lab.sweep().at === "final");
      await page.locator(".sweep-card").screenshot({
        path: `${root}test-artifacts/sweep-view.png`,
      });

      // Comparing runs: algo on a categorical axis; GD's points are its own replicas.
      await page.goto(`${base}/?runs=${sweep},${gd}&sweep=test_error&sweep_x=algo`);
      // Both runs fully loaded (every snapshot), not just the view drawn from what came first.
      await page.waitForFunction(
        (n) =>
          (globalThis as Lab).__lab?.sweep()?.xAxis === "category" &&
          (globalThis as Lab).__lab.runs().filter((r: { rows: number }) => r.rows === n)
              .length === 2,
        STEPS / EVERY + 1,
        { timeout: 60_000 },
      );
      const byAlgo = await lab(page, (l) => l.sweep());
      const gdFinals = await finalValues(base, gd, "test_error");
      const gdStat = byAlgo.lines.flatMap((l: Lab) => l.stats).find((s: Lab) => s.x === "gd");
      assert.ok(gdStat, JSON.stringify(byAlgo.lines));
      close(gdStat.mean, mean(gdFinals), "GD's mean over its replicas");
      assert.equal(gdStat.n, 2);
      // Label noise is never averaged over its settings: each setting is its own point.
      const ln = byAlgo.lines.flatMap((l: Lab) => l.stats).filter((s: Lab) =>
        s.x === "label-noise"
      );
      assert.equal(ln.length, DELTAS.length * LRS.length);

      // Defect: the caption follows the experiment shown (train_loss is another formula there).
      const docs: Record<string, Record<string, string>> = {};
      for (const e of await (await fetch(`${base}/api/experiments`)).json()) {
        docs[e.id] = Object.fromEntries(e.metrics.map((m: Lab) => [m.name, m.doc]));
      }
      const caption = () =>
        page.locator('.chart-card[data-metric="train_loss"] .metric-doc').innerText();
      assert.equal(await caption(), docs["shape-matters"].train_loss);
      await page.locator(`.run-row[data-run="${pegr}"] .run-label`).click();
      await page.waitForFunction((id) => {
        const l = (globalThis as Lab).__lab;
        return l.state().runs?.join() === id && l.chart("train_loss")?.series.length > 0 &&
          l.chart("train_loss").series.every((s: { run: string }) => s.run === id);
      }, pegr);
      assert.equal(await caption(), docs.pegr.train_loss);
      assert.notEqual(docs.pegr.train_loss, docs["shape-matters"].train_loss);
      // The PEGR phase plane labels more than two ticks per axis.
      await page.waitForFunction((id) => (globalThis as Lab).__lab.panel("pegr")?.[id], pegr);
      const ticks = (await lab(page, (l) => l.panel("pegr")))[pegr].ticks;
      assert.ok(ticks.x >= 3 && ticks.y >= 3, `phase plane ticks ${JSON.stringify(ticks)}`);

      // Runs list: grouped by experiment (latest first), filtered by text and experiment.
      const heads = await page.locator(".runs-group-head").evaluateAll((els) =>
        els.map((e) => e.getAttribute("data-experiment"))
      );
      assert.deepEqual(heads, ["shape-matters", "pegr"]);
      await page.fill(".runs-filter input[name=filter-text]", "pegr");
      await page.waitForFunction(() => document.querySelectorAll(".run-row").length === 1);
      assert.equal(await page.locator(".run-row").getAttribute("data-run"), pegr);
      await page.fill(".runs-filter input[name=filter-text]", "");
      await page.selectOption(".runs-filter select[name=filter-experiment]", "shape-matters");
      await page.waitForFunction(() => document.querySelectorAll(".run-row").length === 2);
      assert.deepEqual(
        (await page.locator(".run-row").evaluateAll((els) =>
          els.map((e) => e.getAttribute("data-run"))
        )).sort(),
        [gd, sweep].sort(),
      );
      await page.selectOption(".runs-filter select[name=filter-experiment]", "");
      await page.waitForFunction(() => document.querySelectorAll(".run-row").length === 3);

      // Defect: the form refuses "abc" naming the field, and sends nothing.
      const before = (await (await fetch(`${base}/api/runs`)).json()).length;
      await page.click("details.new-run > summary");
      const form = page.locator("form.run-form");
      await form.locator("select[name=experiment]").selectOption("shape-matters");
      await form.locator("input[name=lr]").fill("abc");
      await form.locator("button[type=submit]").click();
      await page.waitForFunction(() =>
        document.querySelector('[data-field="lr"] .field-error')?.textContent !== ""
      );
      assert.equal(
        await form.locator('[data-field="lr"] .field-error').innerText(),
        'lr: "abc" is not a number',
      );
      await form.locator("input[name=steps]").fill("12x");
      await form.locator("button[type=submit]").click();
      await page.waitForFunction(() =>
        document.querySelector('[data-field="steps"] .field-error')?.textContent !== ""
      );
      assert.equal((await (await fetch(`${base}/api/runs`)).json()).length, before);

      // Renaming and tagging in place sends PATCH /api/runs/:id with JSON {name, tags, note}.
      let patched: { method: string; type: string | null; body: unknown } | null = null;
      await page.route(`**/api/runs/${sweep}*`, async (route) => {
        const req = route.request();
        if (req.method() !== "PATCH") return route.continue();
        patched = {
          method: req.method(),
          type: req.headers()["content-type"],
          body: req.postDataJSON(),
        };
        await route.fulfill({ status: 200, contentType: "application/json", body: "{}" });
      });
      await page.locator(`.run-row[data-run="${sweep}"] [data-action=edit]`).click();
      await page.fill(`.run-row[data-run="${sweep}"] input[name=run-name]`, "δ × lr grid");
      await page.fill(`.run-row[data-run="${sweep}"] input[name=run-tags]`, "sweep, shape matters");
      await page.locator(`.run-row[data-run="${sweep}"] [data-action=save]`).click();
      await page.waitForFunction(() => !document.querySelector(".run-editor"));
      assert.deepEqual(patched, {
        method: "PATCH",
        type: "application/json",
        body: { name: "δ × lr grid", tags: ["sweep", "shape matters"], note: "" },
      });

      // A run log dropped on the page is uploaded as raw bytes to POST /api/runs/import.
      let imported: { type: string | null; bytes: number[] } | null = null;
      await page.route("**/api/runs/import*", async (route) => {
        const req = route.request();
        imported = {
          type: req.headers()["content-type"],
          bytes: [...(req.postDataBuffer() ?? [])],
        };
        await route.fulfill({
          status: 201,
          contentType: "application/json",
          body: JSON.stringify({ id: sweep }),
        });
      });
      const dropped = await page.evaluateHandle(() => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array([76, 65, 66, 0, 255])], "run.lablog"));
        return dt;
      });
      await page.dispatchEvent("body", "drop", { dataTransfer: dropped });
      await page.waitForFunction(() =>
        [...document.querySelectorAll(".toast")].some((t) => t.textContent?.includes("imported"))
      );
      assert.deepEqual(imported, {
        type: "application/octet-stream",
        bytes: [76, 65, 66, 0, 255],
      });
      assert.deepEqual(errors, []);
    } finally {
      await closeAll();
    }
  },
});
