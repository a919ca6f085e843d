/**
 * Takes a screenshot of each dashboard preset after its runs finish, as a user would see it:
 * a fresh lab (own data directory), headless Chromium, the preset's Start button with its
 * default settings. Not a test: the pictures go to docs/img/ for the experiment pages.
 *   deno run -A test/screenshot_presets.ts [PRESET_ID ...] [--out=docs/img] [--timeout=300]
 */
import { chromium } from "playwright-core";
import { parseCliArgs } from "../server/cli/args.ts";
import { startTestLab } from "./lab_harness.ts";
import { CHROMIUM_ARGS } from "./browser_harness.ts";

const { positional, flags } = parseCliArgs(Deno.args);
const outDir = typeof flags.get("out") === "string" ? String(flags.get("out")) : "docs/img";
const timeoutS = Number(flags.get("timeout") ?? 300);
await Deno.mkdir(outDir, { recursive: true });

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
try {
  const probeLab = await startTestLab();
  const probe = await browser.newPage();
  await probe.goto(`http://127.0.0.1:${probeLab.port}/`);
  await probe.waitForSelector(".preset[data-preset]");
  const all = await probe.$$eval(
    ".preset[data-preset]",
    (els) => els.map((e) => e.getAttribute("data-preset")!),
  );
  await probe.close();
  await probeLab.close();
  for (const id of positional.length ? positional : all) {
    const lab = await startTestLab();
    const page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
    try {
      await page.goto(`http://127.0.0.1:${lab.port}/`);
      const card = page.locator(`.preset[data-preset="${id}"]`);
      await card.locator("button.primary").click();
      const t0 = performance.now();
      let done = false;
      while (!done && performance.now() - t0 < timeoutS * 1000) {
        await page.waitForTimeout(1000);
        done = await page.evaluate(() => {
          // deno-lint-ignore no-explicit-any
          const runs = (globalThis as any).__lab.runs() as { status: string }[];
          return runs.length > 0 && runs.every((r) => !["queued", "running"].includes(r.status));
        });
      }
      await page.waitForTimeout(1500); // let the last frames draw
      const path = `${outDir}/${id}.png`;
      await page.screenshot({ path, fullPage: true });
      console.log(
        `${id}: ${done ? "finished" : `still running after ${timeoutS}s`} in ${
          ((performance.now() - t0) / 1000).toFixed(0)
        }s -> ${path}`,
      );
    } finally {
      await page.close();
      await lab.close();
    }
  }
} finally {
  await browser.close();
}
