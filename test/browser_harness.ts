/**
 * Shared by the tests and scripts that drive Debian's headless Chromium: where it is, how it
 * is launched, and the check that it and an up-to-date dashboard build are there. A module of
 * its own (not a test file) so that importing it registers no tests.
 */
const root = new URL("..", import.meta.url).pathname;

import { type Browser, chromium, type Page } from "playwright-core";
import { startLab } from "../server/api/server.ts";

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** Fails (never skips) when a prerequisite is missing, saying how to get it. */
export async function requireDashboardPrerequisites(): Promise<void> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(
      `${CHROMIUM} not found: install Debian's Chromium with "apt-get install chromium"`,
    );
  }
  let built: Deno.FileInfo;
  try {
    built = await Deno.stat(`${root}build/client/dashboard.js`);
  } catch {
    throw new Error(
      "build/client/dashboard.js missing: run `deno task build` (deno task test does)",
    );
  }
  const sources = [`${root}client/subscriber.ts`, `${root}client/protocol.ts`];
  for (const dir of ["client/dashboard", "client/dashboard/panels"]) {
    for await (const e of Deno.readDir(`${root}${dir}`)) {
      if (e.isFile) sources.push(`${root}${dir}/${e.name}`);
    }
  }
  for (const file of sources) {
    const info = await Deno.stat(file).catch(() => null);
    if (info?.mtime && built.mtime && info.mtime > built.mtime) {
      throw new Error(`build/client is older than ${file}: run \`deno task build\``);
    }
  }
}

/** The dashboard's debug hook (client/dashboard/main.ts, globalThis.__lab), untyped here. */
// deno-lint-ignore no-explicit-any
export type Lab = any;

/** Runs `fn` in the page against the dashboard's debug hook and returns its result. */
export const lab = <T>(page: Page, fn: (l: Lab) => T) =>
  page.evaluate(`(${fn.toString()})(globalThis.__lab)`) as Promise<Awaited<T>>;

/**
 * A lab on a fresh data directory and a headless Chromium beside it, after checking the
 * prerequisites; `close()` ends both and removes the directory.
 */
export async function labWithBrowser(
  prefix: string,
): Promise<{ base: string; browser: Browser; close(): Promise<void> }> {
  await requireDashboardPrerequisites();
  const dataDir = await Deno.makeTempDir({ prefix });
  const server = await startLab({ port: 0, hostname: "127.0.0.1", dataDir });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    base: server.url,
    browser,
    async close() {
      await browser.close();
      await server.shutdown();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}
