/**
 * Screenshots of the sweep view for the docs: a label-noise sweep on Shape Matters (δ × lr,
 * three seeds each, written as per-replica lists) on a fresh lab in headless Chromium, shown
 * as final test error against δ (one line per lr, seeds as points with their band) and as a
 * δ × lr heatmap. Not a test: the pictures go to docs/img/.
 *   deno run -A test/screenshot_sweep.ts [--out=docs/img] [--steps=20000]
 */
import { chromium } from "playwright-core";
import { parseCliArgs } from "../server/cli/args.ts";
import { startTestLab } from "./lab_harness.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./browser_harness.ts";

const { flags } = parseCliArgs(Deno.args);
const outDir = typeof flags.get("out") === "string" ? String(flags.get("out")) : "docs/img";
const steps = Number(flags.get("steps") ?? 20000);
await Deno.mkdir(outDir, { recursive: true });

const DELTAS = [0.125, 0.25, 0.5, 1, 2], LRS = [0.005, 0.01, 0.02], SEEDS = 3;
const grid = DELTAS.flatMap((d) =>
  LRS.flatMap((lr) => Array.from({ length: SEEDS }, () => [d, lr]))
);

const lab = await startTestLab();
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
try {
  const base = `http://127.0.0.1:${lab.port}`;
  const res = await fetch(`${base}/api/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      experiment: "shape-matters",
      name: "δ × lr sweep",
      params: {
        algo: "label-noise",
        delta: grid.map((g) => g[0]),
        lr: grid.map((g) => g[1]),
        lr_schedule: [],
      },
      replicas: grid.length,
      steps,
      every: Math.max(1, Math.round(steps / 200)),
      backend: "wasm",
    }),
  });
  const { id } = await res.json();
  for (;;) {
    const run = await (await fetch(`${base}/api/runs/${id}`)).json();
    if (run.status === "finished") break;
    if (run.status === "failed") throw new Error(run.error);
    await new Promise((r) => setTimeout(r, 500));
  }
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const shoot = async (query: string, file: string, ready: string) => {
    await page.goto(`${base}/?runs=${id}&theme=light&${query}`);
    await page.waitForFunction(ready, null, { timeout: 60_000 });
    await page.locator(".sweep-card").screenshot({ path: `${outDir}/${file}` });
    console.log(`${outDir}/${file}`);
  };
  await shoot(
    "sweep=test_error&sweep_x=delta",
    "sweep-view.png",
    `globalThis.__lab?.sweep()?.lines?.length === ${LRS.length}`,
  );
  await shoot(
    "sweep=test_error&sweep_x=delta&sweep_y=lr",
    "sweep-heatmap.png",
    `globalThis.__lab?.sweep()?.cells?.length === ${DELTAS.length * LRS.length}`,
  );
  // The time charts of the same sweep: one line per setting, coloured along δ.
  await page.goto(`${base}/?runs=${id}&theme=light&metrics=test_error`);
  await page.waitForFunction("globalThis.__lab?.chart('test_error')?.data[0].length > 100");
  await page.locator('.chart-card[data-metric="test_error"]').screenshot({
    path: `${outDir}/sweep-lines.png`,
  });
  console.log(`${outDir}/sweep-lines.png`);
} finally {
  await browser.close();
  await lab.close();
}
