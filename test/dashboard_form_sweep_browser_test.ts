/**
 * A sweep started from the dashboard's form, as the done-when describes it: δ typed as
 * "0.25,0.5,1,2" with 3 seeds is one run of 4 settings × 3 seeds (the grid, not four
 * per-replica values), drawn as 4 lines whose bands span their own seeds, and the sweep view
 * of the final test_error against δ equals the run's CSV export.
 * Needs `deno task build` first and `apt-get install chromium`.
 */
import assert from "node:assert/strict";
import { type Lab, lab, labWithBrowser } from "./browser_harness.ts";
import { close, finalValues, mean, waitFinished } from "./sweep_checks.ts";

const DELTAS = [0.25, 0.5, 1, 2], SEEDS = 3;
const STEPS = 2000, EVERY = 100;

Deno.test({
  name: "dashboard form: a list and seeds start one sweep run, drawn per setting, sweep view = CSV",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { base, browser, close: closeAll } = await labWithBrowser("lab-form-sweep-");
    try {
      const page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${base}/`);
      await page.click("details.new-run > summary");
      const form = page.locator("form.run-form");
      await form.locator("select[name=experiment]").selectOption("shape-matters");
      await form.locator("select[name=algo]").selectOption("label-noise");
      await form.locator("input[name=d]").fill("20");
      await form.locator("input[name=n]").fill("10");
      await form.locator("input[name=delta]").fill(DELTAS.join(","));
      await form.locator("input[name=seeds]").fill(String(SEEDS));
      await form.locator("input[name=steps]").fill(String(STEPS));
      await form.locator("input[name=every]").fill(String(EVERY));
      await form.locator("select[name=backend]").selectOption("wasm");
      await form.locator("button[type=submit]").click();
      await page.waitForFunction(
        () => /started|fix/.test(document.querySelector(".form-status")?.textContent ?? ""),
        null,
        { timeout: 30_000 },
      );
      const said = await form.locator(".form-status, .field-error").allInnerTexts();
      assert.match(
        await form.locator(".form-status").innerText(),
        /^started/,
        said.filter((t) => t).join(" · "),
      );
      const runs: { id: string; replicas: number; sweep?: { settings: unknown[] } }[] =
        await (await fetch(`${base}/api/runs`)).json();
      assert.equal(runs.length, 1);
      const id = runs[0].id;
      assert.equal(runs[0].sweep?.settings.length, DELTAS.length * SEEDS, "12 replicas");
      await waitFinished(base, [id]);
      const finals = await finalValues(base, id, "test_error");
      assert.equal(finals.length, DELTAS.length * SEEDS);
      // Replica order: δ outer, seed inner (docs/sweeps.md).
      const seedsOf = (k: number) => Array.from({ length: SEEDS }, (_, s) => k * SEEDS + s);

      // Four lines, each the mean and min–max of its own three seeds.
      // Wait for the chart itself to hold the last step (it redraws after the stream's rows).
      await page.waitForFunction(
        (last) => (globalThis as Lab).__lab?.chart("test_error")?.data?.[0]?.at(-1) === last,
        STEPS,
        { timeout: 60_000 },
      );
      const chart = await lab(page, (l) => l.chart("test_error"));
      const lines = [...new Set(chart.series.map((s: { line: number }) => s.line))];
      assert.equal(lines.length, DELTAS.length, "one line per δ");
      const last = chart.data[0].length - 1;
      for (let k = 0; k < DELTAS.length; k++) {
        const col = (kind: string) =>
          chart.data[
            1 + chart.series.findIndex((s: { line: number; kind: string }) =>
              s.line === k && s.kind === kind
            )
          ];
        const mine = seedsOf(k).map((r) => finals[r]);
        close(col("raw")[last], mean(mine), `δ=${DELTAS[k]} mean`);
        close(col("lo")[last], Math.min(...mine), `δ=${DELTAS[k]} band low`);
        close(col("hi")[last], Math.max(...mine), `δ=${DELTAS[k]} band high`);
      }

      // The sweep view: final test_error against δ equals the CSV's values.
      await page.goto(`${base}/?runs=${id}&sweep=test_error&sweep_x=delta`);
      await page.waitForFunction(
        () => (globalThis as Lab).__lab?.sweep()?.lines?.[0]?.stats?.length === 4,
        null,
        { timeout: 60_000 },
      );
      const view = await lab(page, (l) => l.sweep());
      assert.equal(view.lines.length, 1);
      assert.deepEqual(view.lines[0].stats.map((s: { x: number }) => s.x), DELTAS);
      view.lines[0].stats.forEach((s: { mean: number; lo: number; hi: number }, k: number) => {
        const mine = seedsOf(k).map((r) => finals[r]);
        close(s.mean, mean(mine), `sweep view δ=${DELTAS[k]}`);
        close(s.lo, Math.min(...mine), "sweep view band low");
        close(s.hi, Math.max(...mine), "sweep view band high");
      });
      assert.deepEqual(errors, []);
    } finally {
      await closeAll();
    }
  },
});
