/**
 * The lab against a real browser (Debian's headless Chromium): a page from another site can
 * neither open the stream nor start a run on a lab without a token (the browser sends its
 * Origin; a text/plain POST needs no CORS preflight, so only the lab can refuse it); and the
 * dashboard opened with `?token=…` moves the token out of the address bar into
 * sessionStorage, never puts it in a URL it requests or copies ("Copy link"), and still
 * works after a reload.
 * Needs `deno task build` first (`deno task test` does) and `apt-get install chromium`.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, requireDashboardPrerequisites } from "./browser_harness.ts";
import { smallSpec, startTestLab, submit, waitFor } from "./lab_harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "browser: a page from another site can neither open the stream nor start a run",
  opts,
  async () => {
    await requireDashboardPrerequisites();
    const lab = await startTestLab();
    const spec = JSON.stringify(smallSpec({ steps: 200 }));
    // The other site: a page on another port of the same machine, as a page the user visits.
    const page = `<!doctype html><title>elsewhere</title><script>
      globalThis.result = {};
      const ws = new WebSocket("ws://127.0.0.1:${lab.port}/api/stream");
      ws.onopen = () => { result.ws = "open"; };
      ws.onerror = () => { result.ws = "refused"; };
      fetch("http://127.0.0.1:${lab.port}/api/runs", {
        method: "POST", mode: "no-cors", headers: { "content-type": "text/plain" },
        body: ${JSON.stringify(spec)},
      }).then(() => { result.post = "sent"; }, () => { result.post = "failed"; });
    </script>`;
    const ac = new AbortController();
    const other = Deno.serve(
      { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
      () => new Response(page, { headers: { "content-type": "text/html" } }),
    );
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const tab = await browser.newPage();
      await tab.goto(`http://127.0.0.1:${other.addr.port}/`);
      await tab.waitForFunction(() => {
        const r = (globalThis as unknown as { result: Record<string, string> }).result;
        return r.ws !== undefined && r.post !== undefined;
      });
      const result = await tab.evaluate(() =>
        (globalThis as unknown as { result: Record<string, string> }).result
      );
      assert.equal(result.ws, "refused", "the stream refuses the other site");
      assert.deepEqual(lab.manager.ids(), [], "the other site started no run");
    } finally {
      await browser.close();
      ac.abort();
      await other.finished;
      await lab.close();
    }
  },
);

Deno.test(
  "dashboard: ?token= moves to sessionStorage, never into a URL requested or copied",
  opts,
  async () => {
    await requireDashboardPrerequisites();
    const token = "tok-" + crypto.randomUUID();
    const lab = await startTestLab({ token });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const id = await submit(lab.url, smallSpec({ steps: 50_000_000, every: 1000 }), token);
      const context = await browser.newContext({
        permissions: ["clipboard-read", "clipboard-write"],
      });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      const urls: string[] = [];
      page.on("request", (r) => urls.push(r.url()));
      page.on("websocket", (ws) => urls.push(ws.url()));
      const opened = `${lab.url}/?token=${token}&x=wall`;
      await page.goto(opened);
      // Runs listed (HTTP with the token) and the stream live (WebSocket with the token).
      const ready = () =>
        page.waitForFunction(
          (run) => {
            // deno-lint-ignore no-explicit-any
            const l = (globalThis as any).__lab;
            return l.connected() && l.runs().some((r: { id: string }) => r.id === run);
          },
          id,
          { timeout: 20_000 },
        );
      await ready();
      // The address keeps the view (x=wall; a fresh load adds the runs it shows), not the token.
      const landed = new URL(await page.evaluate(() => location.href));
      assert.equal(landed.searchParams.get("x"), "wall");
      assert.equal(landed.searchParams.get("token"), null);
      assert.ok(!landed.href.includes(token), landed.href);
      assert.equal(await page.evaluate(() => sessionStorage.getItem("lab.token")), token);

      // A view change rewrites the address: still without the token.
      await page.click("[data-control=x] [data-value=step]");
      await page.waitForFunction(() => !location.search.includes("x=wall"));
      const href = await page.evaluate(() => location.href);
      assert.ok(!href.includes(token), href);
      await page.locator("button", { hasText: "Copy link" }).click();
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(copied, href, "Copy link copies the view");
      assert.ok(!copied.includes(token), copied);

      // A token-guarded POST from the page (stop, from the runs list) goes through.
      await page.locator(`.run-row[data-run="${id}"] [data-action=stop]`).click();
      await waitFor(() => lab.manager.status(id) === "stopped", "stopped from the dashboard");

      // After a reload the token comes from sessionStorage.
      await page.reload();
      await ready();
      assert.deepEqual(
        urls.filter((u) => u.includes(token)),
        [opened],
        "only the address typed in carried the token",
      );
      assert.deepEqual(errors, [], "no page errors");
    } finally {
      await browser.close();
      await lab.close();
    }
  },
);
