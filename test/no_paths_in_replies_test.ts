/**
 * No reply contains a filesystem path: not the data directory, the dashboard's directory or
 * the checkout. Requests that used to echo one: a NUL in a static file name
 * (`/index.html%00.js`), a run's detail (its log's path), filesystem errors in the run
 * manager and the log routes (a log gone from disk, the runs directory gone), and a run
 * whose backend failed with an error naming a file (its status, in replies and the stream).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { redactPaths } from "../server/redact_paths.ts";
import { RawStream, ROOT, smallSpec, startTestLab, submit, waitFor } from "./lab_harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** The reply's text holds none of these directories (also not JSON-escaped). */
function assertNoPath(text: string, dirs: string[], what: string): void {
  for (const dir of dirs) {
    const base = dir.replace(/\/+$/, "");
    for (const form of [base, JSON.stringify(base).slice(1, -1)]) {
      assert.ok(!text.includes(form), `${what} contains ${base}: ${text}`);
    }
  }
  assert.doesNotMatch(text, /'\/[^']*'|file:\/\//, `${what} contains a path: ${text}`);
}

async function get(url: string, init?: RequestInit): Promise<{ status: number; text: string }> {
  const res = await fetch(url, init);
  return { status: res.status, text: await res.text() };
}

Deno.test("static files: a NUL in the name is a 404 that names no path", opts, async () => {
  const staticDir = await Deno.makeTempDir({ prefix: "lab-static-" });
  await Deno.writeTextFile(join(staticDir, "index.html"), "<!doctype html><p>lab");
  const lab = await startTestLab({ staticDir });
  try {
    const dirs = [staticDir, lab.dataDir, ROOT];
    for (const path of ["/index.html%00.js", "/%00", "/a%00/b", "/index.html%00"]) {
      const r = await get(lab.url + path);
      assert.equal(r.status, 404, path);
      assertNoPath(r.text, dirs, `GET ${path}`);
    }
    assert.equal((await get(lab.url + "/")).status, 200, "the page itself is still served");
  } finally {
    await lab.close();
    await Deno.remove(staticDir, { recursive: true });
  }
});

Deno.test(
  "run routes: no log path in a run's detail, none in errors from the filesystem",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const dirs = [lab.dataDir, ROOT];
      const id = await submit(lab.url, smallSpec({ steps: 200, every: 100 }));
      await waitFor(() => lab.manager.status(id) === "finished", "run finished");
      const detail = await get(`${lab.url}/api/runs/${id}`);
      assert.equal(detail.status, 200);
      assert.equal(JSON.parse(detail.text).path, undefined, "no path field");
      assertNoPath(detail.text, dirs, "GET /api/runs/:id");

      // The run's log disappears from disk: the routes that read it fail, without the path.
      await Deno.remove(lab.manager.logPath(id)!);
      for (const route of ["log", "metrics.csv"]) {
        const r = await get(`${lab.url}/api/runs/${id}/${route}`);
        assert.equal(r.status, 500, route);
        assertNoPath(r.text, dirs, `GET /api/runs/:id/${route}`);
        assert.match(JSON.parse(r.text).error, /internal error: a file the lab needs is missing/);
      }
      // So does a history request on the stream.
      const s = new RawStream(lab.url);
      await s.send({ type: "history", req: 7, run: id });
      const failed = await waitFor(() => s.of("error").find((m) => m.req === 7), "history error");
      assert.match(failed.message, /history failed: a file the lab needs is missing/);
      assertNoPath(JSON.stringify(failed), dirs, "the stream's history error");
      await s.close();

      // The runs directory disappears: a new run cannot get a log, and the reply says so
      // without the directory.
      await Deno.remove(join(lab.dataDir, "runs"), { recursive: true });
      const r = await get(`${lab.url}/api/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(smallSpec({ steps: 200 })),
      });
      // The store answers a log it cannot create with 503 and the cause (docs/storage.md).
      assert.equal(r.status, 503);
      assertNoPath(r.text, dirs, "POST /api/runs with the runs directory gone");
      assert.match(JSON.parse(r.text).error, /ENOENT/);
      assert.equal((await get(`${lab.url}/api/health`)).status, 200, "the server goes on");
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "a run failing with a filesystem error reports the cause without the path",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-test-" });
    const lab = await startTestLab({
      dataDir,
      // The backend cannot load its kernel: the error Deno gives names the file.
      openSession: async () => {
        await Deno.readFile(join(dataDir, "kernels", "missing.wasm"));
        throw new Error("unreachable");
      },
    });
    try {
      const dirs = [lab.dataDir, ROOT];
      const s = new RawStream(lab.url);
      await s.send({ type: "subscribe", runs: "*" });
      const id = await submit(lab.url, smallSpec({ steps: 200 }));
      await waitFor(() => lab.manager.status(id) === "failed", "run failed");
      await waitFor(() => s.finished(id), "failure on the stream");
      const status = s.of("status").find((m) => m.run === id && m.status === "failed")!;
      assert.match(status.error!, /could not start the wasm backend: No such file/);
      assertNoPath(JSON.stringify(status), dirs, "the stream's failed status");
      for (const path of [`/api/runs/${id}`, "/api/runs"]) {
        const r = await get(lab.url + path);
        assert.match(r.text, /could not start the wasm backend/);
        assertNoPath(r.text, dirs, `GET ${path}`);
      }
      await s.close();
    } finally {
      await lab.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test("the paths Deno's filesystem errors name are taken out of messages", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lab-redact-" });
  try {
    const messages: string[] = [];
    const fail = async (op: () => Promise<unknown>) => {
      try {
        await op();
        assert.fail("expected an error");
      } catch (e) {
        messages.push((e as Error).message);
      }
    };
    await fail(() => Deno.readFile(join(dir, "missing.wasm")));
    await fail(() => Deno.rename(join(dir, "a"), join(dir, "b")));
    await fail(() => Deno.readFile(join(dir, "nul\0.js")));
    await fail(() => Deno.readDir(join(dir, "none"))[Symbol.asyncIterator]().next());
    messages.push(`failed at ${new URL(`file://${dir}/x.ts`)}:3:4`, `cannot open ${dir}: nope`);
    for (const m of messages) {
      assert.ok(m.includes(dir), `the raw message names the path: ${m}`);
      const redacted = redactPaths(m);
      assertNoPath(redacted, [dir], "redacted");
      assert.match(redacted, /\(path\)/);
    }
    const plain = "params.lr: must be a number in [1e-9, 10], got 50; steps/s 3/4";
    assert.equal(redactPaths(plain), plain, "messages without paths are kept");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
