/**
 * Pages from other sites are kept out. A browser sends `Origin` on every WebSocket handshake
 * and on cross-origin POST/DELETE; the lab refuses origins that are not its own (403) and
 * admits its own page, the loopback origins of its port and those named with
 * `--allow-origin`; requests without Origin (curl, the CLI, other services) pass. Without a
 * token it answers only to loopback host names (a DNS-rebinding page would otherwise be
 * "same origin"). POST bodies must be JSON (415), so a text/plain "simple request", which a
 * page may send anywhere without asking, cannot start a run.
 */
import assert from "node:assert/strict";
import { createApp } from "../server/api/app.ts";
import { RunManager } from "../server/runs/manager.ts";
import { ROOT, smallSpec, startTestLab, waitFor } from "./lab_harness.ts";
import { TcpWsClient } from "./tcp_ws_client.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const backends = () => Promise.resolve({ backends: {}, default_backend: "wasm" });
const EVIL = "http://evil.example";
const SPEC = JSON.stringify(smallSpec({ steps: 200, every: 100 }));

/** "open" or the handshake's status line, for a handshake sent with these headers. */
async function upgrade(port: number, headers: Record<string, string>): Promise<string> {
  try {
    const c = await TcpWsClient.connect(port, "/api/stream", headers);
    c.close();
    return "open";
  } catch (e) {
    return (e as Error).message;
  }
}

/** A free port that is not the lab's (an origin on it is another site). */
function otherPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function post(base: string, path: string, headers: Record<string, string>, body = SPEC) {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  return { status: res.status, body: await res.json() };
}

Deno.test(
  "a cross-origin WebSocket upgrade is refused (403); same-origin and loopback ones open",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const port = lab.port;
      const refused = [
        { Origin: EVIL },
        { Origin: `http://127.0.0.1:${otherPort()}` },
        { Origin: `http://localhost:${otherPort()}` },
        { Origin: "null" },
      ];
      for (const headers of refused) {
        assert.match(await upgrade(port, headers), /HTTP\/1\.1 403/, headers.Origin);
      }
      const admitted: Record<string, string>[] = [
        {},
        { Origin: `http://127.0.0.1:${port}` },
        { Origin: `http://localhost:${port}` },
        { Origin: `http://[::1]:${port}` },
        { Origin: `http://localhost:${port}`, Host: `localhost:${port}` },
      ];
      for (const headers of admitted) {
        assert.equal(await upgrade(port, headers), "open", JSON.stringify(headers));
      }
      // The 403 says why and how to admit the page.
      const res = await fetch(`${lab.url}/api/stream`, {
        headers: { origin: EVIL, upgrade: "websocket" },
      });
      assert.equal(res.status, 403);
      assert.match((await res.json()).error, /evil\.example.*--allow-origin=http:\/\/evil/);
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "cross-origin POST and DELETE are refused (403); the lab's page and tools without Origin pass",
  opts,
  async () => {
    const lab = await startTestLab();
    try {
      const evil = await post(lab.url, "/api/runs", { origin: EVIL });
      assert.equal(evil.status, 403);
      assert.match(evil.body.error, /cross-origin.*evil\.example.*--allow-origin/);
      assert.deepEqual(lab.manager.ids(), [], "no run was started");

      const own = await post(lab.url, "/api/runs", { origin: `http://localhost:${lab.port}` });
      assert.equal(own.status, 201, JSON.stringify(own.body));
      const id: string = own.body.id;
      const noOrigin = await post(lab.url, "/api/runs", {});
      assert.equal(noOrigin.status, 201, "curl and the CLI send no Origin");

      const stop = await post(lab.url, `/api/runs/${id}/stop`, { origin: EVIL }, "");
      assert.equal(stop.status, 403);
      const del = await fetch(`${lab.url}/api/runs/${id}`, {
        method: "DELETE",
        headers: { origin: EVIL },
      });
      assert.equal(del.status, 403);
      await del.body?.cancel();
      assert.ok(lab.manager.has(id), "the run is still there");
      await waitFor(() => lab.manager.inFlight() === 0, "runs done");
      const delOwn = await fetch(`${lab.url}/api/runs/${id}`, {
        method: "DELETE",
        headers: { origin: `http://127.0.0.1:${lab.port}` },
      });
      assert.equal(delOwn.status, 200);
      await delOwn.body?.cancel();
      assert.ok(!lab.manager.has(id));
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "POST bodies must be JSON: text/plain, forms and no type get 415; bodyless POSTs need none",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-body-type-" });
    const manager = await RunManager.open({ dataDir });
    try {
      const app = createApp({ manager, backends });
      const send = (path: string, headers: Record<string, string>, body: BodyInit | null = SPEC) =>
        app.request(path, { method: "POST", headers, body });
      for (
        const type of [
          "text/plain",
          "text/plain;charset=UTF-8",
          "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=x",
        ]
      ) {
        const res = await send("/api/runs", { "content-type": type });
        assert.equal(res.status, 415, type);
        assert.match(
          (await res.json()).error,
          /POST \/api\/runs takes Content-Type: application\/json/,
        );
      }
      // A body without a type (a Blob of unknown type) is refused too.
      const untyped = await send("/api/runs", {}, new Blob([SPEC]));
      assert.equal(untyped.status, 415);
      assert.match((await untyped.json()).error, /without one/);
      assert.deepEqual(manager.ids(), [], "no run was started");

      const json = await send("/api/runs", { "content-type": "application/json; charset=utf-8" });
      assert.equal(json.status, 201);
      const stop = await send(`/api/runs/${(await json.json()).id}/stop`, {}, null);
      assert.notEqual(stop.status, 415, "stop has no body");
      await stop.body?.cancel();

      // The one declared exception: a run log to import is octet-stream. It passes the type
      // check and reaches the import route, which refuses this body as not a run log (400).
      const raw = await send("/api/runs/import", { "content-type": "application/octet-stream" });
      assert.equal(raw.status, 400);
      assert.match((await raw.json()).error, /run log/);
      const importText = await send("/api/runs/import", { "content-type": "text/plain" });
      assert.equal(importText.status, 415);
      assert.match((await importText.json()).error, /application\/octet-stream/);
    } finally {
      await manager.shutdown();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test(
  "without a token the lab answers only at loopback host names (DNS rebinding)",
  opts,
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-rebinding-" });
    const manager = await RunManager.open({ dataDir });
    try {
      const open = createApp({ manager, backends });
      const rebound = await open.request("http://evil.example:8420/api/runs");
      assert.equal(rebound.status, 403);
      assert.match((await rebound.json()).error, /loopback.*evil\.example:8420/);
      const page = await open.request("http://evil.example:8420/");
      assert.equal(page.status, 403);
      await page.body?.cancel();
      for (const host of ["127.0.0.1:8420", "localhost:8420", "[::1]:8420"]) {
        const res = await open.request(`http://${host}/api/runs`);
        assert.equal(res.status, 200, host);
        await res.body?.cancel();
      }
      const named = createApp({ manager, backends, allowOrigins: ["http://lab.test:8420"] });
      const res = await named.request("http://lab.test:8420/api/runs");
      assert.equal(res.status, 200, "an --allow-origin host is served");
      await res.body?.cancel();
      // With a token the lab may be reached under any name; the token guards it.
      const guarded = createApp({ manager, backends, token: "t" });
      const anyName = await guarded.request("http://gpu-box:8420/api/runs");
      assert.equal(anyName.status, 401);
      await anyName.body?.cancel();
    } finally {
      await manager.shutdown();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

/** Starts `deno task serve`'s entry point and waits for its address. */
async function serve(args: string[]) {
  const dataDir = await Deno.makeTempDir({ prefix: "lab-serve-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server/main.ts`, "--port=0", `--data=${dataDir}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/listening on (\S+)/.test(out)) {
    const { value, done } = await reader.read();
    if (done) {
      const err = await new Response(child.stderr).text();
      throw new Error(`server exited: ${out}${err}`);
    }
    out += value;
  }
  const url = out.match(/listening on (\S+)/)![1];
  return {
    port: Number(new URL(url).port),
    async stop() {
      child.kill("SIGTERM");
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel();
      await child.status;
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

Deno.test("--allow-origin admits the named origins and no others", opts, async () => {
  const lab = await serve([
    "--allow-origin=http://trusted.example:3000",
    "--allow-origin=https://a.example,https://b.example/",
  ]);
  try {
    for (
      const origin of ["http://trusted.example:3000", "https://a.example", "https://b.example"]
    ) {
      assert.equal(await upgrade(lab.port, { Origin: origin }), "open", origin);
    }
    const res = await fetch(`http://127.0.0.1:${lab.port}/api/runs`, {
      method: "POST",
      headers: { origin: "http://trusted.example:3000", "content-type": "application/json" },
      body: SPEC,
    });
    assert.equal(res.status, 201);
    await res.body?.cancel();
    for (const origin of ["http://trusted.example:3001", "http://a.example", EVIL]) {
      assert.match(await upgrade(lab.port, { Origin: origin }), /403/, origin);
    }
  } finally {
    await lab.stop();
  }
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server/main.ts`, "--allow-origin=http://x.example/path"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(bad.code, 2);
  assert.match(
    new TextDecoder().decode(bad.stderr),
    /--allow-origin: "http:\/\/x\.example\/path" is not an origin like http:\/\/host:port/,
  );
});
